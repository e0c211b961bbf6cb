//! A store cluster of real `satellite storage init` processes, which tests kill with
//! SIGKILL and benchmarks run beside etcd.

use crate::{free_port, Timings};
use orbit_kv::{Kv, PutRequest, RemoteKv};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One member's command line.
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its client port.
    pub client: u16,
    /// Its peer port.
    pub peer: u16,
    /// The arguments of `satellite`.
    pub args: Vec<String>,
}

/// Processes forming one cluster; killed when dropped.
pub struct ProcCluster {
    /// Where data dirs and logs live.
    pub dir: TempDir,
    /// The members' command lines.
    pub members: Vec<Member>,
    /// The running processes.
    pub procs: Vec<Option<Child>>,
    binary: PathBuf,
    /// With TLS: the CA and the client certificate this cluster's clients use.
    pub tls: Option<ClusterTls>,
}

/// The certificates of a cluster started with [`ProcCluster::start_tls`].
pub struct ClusterTls {
    /// The CA that signed every member's certificate and the test's client one.
    pub pki: crate::pki::Pki,
    /// The certificate tests' clients present.
    pub client: crate::pki::CertFiles,
}

impl ClusterTls {
    /// The tonic client configuration of the test's client.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        orbit_tls::TlsFiles {
            ca_file: Some(self.pki.ca_file.clone()),
            cert_file: Some(self.client.cert.clone()),
            key_file: Some(self.client.key.clone()),
        }
        .client_config()
        .unwrap()
        .expect("files given")
    }
}

impl ProcCluster {
    /// Starts `n` members of `binary` (a `satellite`) and waits until it takes writes.
    pub async fn start(binary: &Path, n: usize, timings: Timings) -> ProcCluster {
        ProcCluster::start_with(binary, n, timings, &[]).await
    }

    /// As [`ProcCluster::start`], with `extra` flags for every member's `storage init`.
    pub async fn start_with(
        binary: &Path,
        n: usize,
        timings: Timings,
        extra: &[&str],
    ) -> ProcCluster {
        ProcCluster::start_inner(binary, n, timings, extra, false).await
    }

    /// As [`ProcCluster::start`], with mutual TLS on the client and peer ports: every
    /// member has a certificate from one test CA and accepts only clients and peers
    /// with one (etcd's `--client-cert-auth` and `--peer-client-cert-auth`).
    pub async fn start_tls(binary: &Path, n: usize, timings: Timings) -> ProcCluster {
        ProcCluster::start_inner(binary, n, timings, &[], true).await
    }

    async fn start_inner(
        binary: &Path,
        n: usize,
        timings: Timings,
        extra: &[&str],
        tls: bool,
    ) -> ProcCluster {
        let mut c = ProcCluster::prepared_inner(binary, n, timings, extra, tls);
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_writable(Duration::from_secs(30)).await;
        c.wait_published(Duration::from_secs(30)).await;
        c
    }

    /// A cluster of `n` members set up as [`ProcCluster::start`] would, none running:
    /// their data dirs can be made first (a restore), then [`ProcCluster::spawn`] each.
    pub fn prepared(binary: &Path, n: usize, timings: Timings) -> ProcCluster {
        ProcCluster::prepared_inner(binary, n, timings, &[], false)
    }

    /// The token every member's `storage init` has.
    pub const TOKEN: &'static str = "crash-test";

    /// `--initial-cluster` of every member: `m0=URL,m1=URL,…`.
    pub fn initial_cluster(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{}={scheme}://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s name and data dir.
    pub fn member(&self, i: usize) -> (String, PathBuf) {
        (
            self.members[i].name.clone(),
            self.dir.path().join(&self.members[i].name),
        )
    }

    fn prepared_inner(
        binary: &Path,
        n: usize,
        timings: Timings,
        extra: &[&str],
        tls: bool,
    ) -> ProcCluster {
        let dir = tempfile::tempdir().unwrap();
        let scheme = if tls { "https" } else { "http" };
        let tls = tls.then(|| {
            let pki = crate::pki::Pki::new(dir.path(), "store");
            let client = pki.issue("client");
            ClusterTls { pki, client }
        });
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}={scheme}://127.0.0.1:{p}"))
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
                    ProcCluster::TOKEN.into(),
                    "--client-url".into(),
                    format!("{scheme}://127.0.0.1:{c}"),
                    "--peer-url".into(),
                    format!("{scheme}://127.0.0.1:{p}"),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--data-dir".into(),
                    dir.path().join(format!("m{i}")).display().to_string(),
                    "--heartbeat-ms".into(),
                    timings.heartbeat_ms.to_string(),
                    "--election-ms".into(),
                    timings.election_ms.to_string(),
                ]
                .into_iter()
                .chain(
                    // Frequent snapshots exercise catch-up in tests, unless `extra` says.
                    (!extra.contains(&"--snapshot-entries"))
                        .then(|| ["--snapshot-entries".to_string(), "2000".to_string()])
                        .into_iter()
                        .flatten(),
                )
                .chain(extra.iter().map(|a| a.to_string()))
                .chain(tls.iter().flat_map(|t| {
                    let own = t.pki.issue(&format!("m{i}"));
                    let ca = t.pki.ca_file.display().to_string();
                    let (cert, key) = (
                        own.cert.display().to_string(),
                        own.key.display().to_string(),
                    );
                    [
                        "--cert-file",
                        &cert,
                        "--key-file",
                        &key,
                        "--trusted-ca-file",
                        &ca,
                        "--client-cert-auth",
                        "--peer-cert-file",
                        &cert,
                        "--peer-key-file",
                        &key,
                        "--peer-trusted-ca-file",
                        &ca,
                        "--peer-client-cert-auth",
                    ]
                    .map(String::from)
                }))
                .collect(),
            })
            .collect();
        ProcCluster {
            dir,
            members,
            procs: (0..n).map(|_| None).collect(),
            binary: binary.to_path_buf(),
            tls,
        }
    }

    /// Waits until every member has published its name and client URL (until then
    /// the member list shows it unstarted, as etcd does).
    pub async fn wait_published(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(kv) = self.connect(&self.endpoints()).await {
                if let Ok(members) = kv.members().await {
                    if members.len() == self.members.len()
                        && members.iter().all(|m| !m.name.is_empty())
                    {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "members did not all publish within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts member `i`'s process (again) on its data dir.
    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .unwrap();
        let child = Command::new(&self.binary)
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

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client)
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// A client of `endpoints`, with the test's certificate if the cluster has TLS.
    async fn connect(&self, endpoints: &[String]) -> orbit_kv::KvResult<RemoteKv> {
        RemoteKv::connect_tls(endpoints, self.tls.as_ref().map(|t| t.client_config())).await
    }

    /// A client of the whole cluster.
    pub async fn client(&self) -> RemoteKv {
        self.connect(&self.endpoints()).await.unwrap()
    }

    /// A client of member `i` alone.
    pub async fn client_of(&self, i: usize) -> RemoteKv {
        self.connect(&[self.endpoint(i)]).await.unwrap()
    }

    /// Waits until a write through the cluster succeeds.
    pub async fn wait_writable(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(kv) = self.connect(&self.endpoints()).await {
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

    /// The index of the member that leads, as the first reachable member sees it.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.procs[i].is_none() {
                continue;
            }
            let Ok(kv) = self.connect(&[self.endpoint(i)]).await else {
                continue;
            };
            let Ok(s) = kv.client().status().await else {
                continue;
            };
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
        if std::thread::panicking() {
            // A failing test shows what the members logged.
            for m in &self.members {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- {} (last lines) ----", m.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
