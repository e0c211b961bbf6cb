//! A store cluster of real `satellite storage init` processes, killed with SIGKILL.

#![allow(dead_code)]

use orbit_kv::{Kv, KvError, PutRequest, RangeRequest, RemoteKv};
use orbit_testkit::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The satellite binary under test.
pub fn satellite() -> &'static str {
    env!("CARGO_BIN_EXE_satellite")
}

/// Member `i`'s command line.
pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub args: Vec<String>,
}

/// Processes forming one cluster.
pub struct ProcCluster {
    pub dir: TempDir,
    pub members: Vec<Member>,
    pub procs: Vec<Option<Child>>,
}

impl ProcCluster {
    /// Starts `n` members (election timeout 500 ms) and waits for a leader.
    pub async fn start(n: usize) -> ProcCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| Member {
                name: format!("m{i}"),
                client: *c,
                peer: *p,
                args: vec![
                    "storage".into(),
                    "init".into(),
                    "--name".into(),
                    format!("m{i}"),
                    "--token".into(),
                    "crash-test".into(),
                    "--client-url".into(),
                    format!("http://127.0.0.1:{c}"),
                    "--peer-url".into(),
                    format!("http://127.0.0.1:{p}"),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--data-dir".into(),
                    dir.path().join(format!("m{i}")).display().to_string(),
                    "--heartbeat-ms".into(),
                    "50".into(),
                    "--election-ms".into(),
                    "500".into(),
                    "--snapshot-entries".into(),
                    "2000".into(),
                ],
            })
            .collect();
        let mut c = ProcCluster {
            dir,
            members,
            procs: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_writable(Duration::from_secs(30)).await;
        c
    }

    /// Starts member `i`'s process (again) on its data dir.
    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .unwrap();
        let child = Command::new(satellite())
            .args(&self.members[i].args)
            .env("ORBIT_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning satellite");
        self.procs[i] = Some(child);
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// A client of the whole cluster.
    pub async fn client(&self) -> RemoteKv {
        RemoteKv::connect(&self.endpoints()).await.unwrap()
    }

    /// A client of member `i` alone.
    pub async fn client_of(&self, i: usize) -> RemoteKv {
        RemoteKv::connect(&[format!("http://127.0.0.1:{}", self.members[i].client)])
            .await
            .unwrap()
    }

    /// Waits until a write through the cluster succeeds.
    pub async fn wait_writable(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(kv) = RemoteKv::connect(&self.endpoints()).await {
                if tokio::time::timeout(
                    Duration::from_secs(2),
                    kv.put(PutRequest::new("ready", "1")),
                )
                .await
                .is_ok_and(|r| r.is_ok())
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "cluster not writable within {timeout:?}; logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member that leads, as member `ask` sees it.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.procs[i].is_none() {
                continue;
            }
            let Ok(kv) = RemoteKv::connect(&[format!("http://127.0.0.1:{}", self.members[i].client)]).await else {
                continue;
            };
            let Ok(s) = kv.client().status().await else { continue };
            let leader = s.leader();
            let members = kv.members().await.ok()?;
            let name = members.iter().find(|m| m.id == leader)?.name.clone();
            return self.members.iter().position(|m| m.name == name);
        }
        None
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Reads `key` linearizably, retrying while the cluster recovers.
pub async fn read_retry(kv: &RemoteKv, key: &str) -> Option<orbit_kv::KeyValue> {
    for _ in 0..100 {
        match kv.range(RangeRequest::key(key)).await {
            Ok(r) => return r.kvs.into_iter().next(),
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(KvError::NoLeader) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }
    panic!("could not read {key}");
}
