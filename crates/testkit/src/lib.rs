//! Real clusters on loopback for tests and benchmarks: in-process orbit store clusters
//! ([`OrbitCluster`]) and clusters of Debian's `etcd` ([`EtcdCluster`]), each on free
//! ports in temporary directories, stopped when dropped.

pub mod metrics;
pub mod pki;
pub mod process;
pub mod replicas;

use orbit_kv::{Kv, RemoteKv};
use orbit_store::{EmbeddedKv, StoreConfig, StoreNode};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// `n` pseudo-random bytes (xorshift from `seed`): incompressible test data, fast to
/// make by the hundreds of MiB even in a debug build.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = seed | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

/// A free TCP port on 127.0.0.1 for a server a test starts later.
///
/// Taken below Linux's ephemeral range (32768 and up), which the kernel hands out
/// as the local port of outgoing connections: a port picked there can be taken by
/// some client's connection before the server binds it. Each port is handed out once
/// per process, and checked free by binding it.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Spread processes apart: start from a point that depends on the process id.
    let mut p = 20_000 + (std::process::id() as u16 % 12_000);
    for _ in 0..12_000 {
        p = if p >= 31_999 { 20_000 } else { p + 1 };
        if !given.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok() {
            given.insert(p);
            return p;
        }
    }
    panic!("no free port between 20000 and 32000 on 127.0.0.1")
}

/// Timings of a test cluster: fast elections so failover tests stay short.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout, ms.
    pub election_ms: u64,
}

impl Timings {
    /// Quick timings for tests.
    pub const FAST: Timings = Timings {
        heartbeat_ms: 50,
        election_ms: 500,
    };
    /// etcd's defaults, for benchmarks.
    pub const ETCD_DEFAULT: Timings = Timings {
        heartbeat_ms: 100,
        election_ms: 1000,
    };
}

/// An in-process orbit store cluster on loopback.
pub struct OrbitCluster {
    /// The members; `None` while stopped.
    pub nodes: Vec<Option<Arc<StoreNode>>>,
    /// Each member's configuration.
    pub configs: Vec<StoreConfig>,
    _dir: TempDir,
}

impl OrbitCluster {
    /// Starts an `n`-member cluster and waits until it has a leader.
    pub async fn start(n: usize, timings: Timings) -> OrbitCluster {
        Self::start_configured(n, timings, |_| {}).await
    }

    /// As [`OrbitCluster::start`], with `tune` applied to every member's configuration.
    pub async fn start_configured(
        n: usize,
        timings: Timings,
        tune: impl Fn(&mut StoreConfig),
    ) -> OrbitCluster {
        // A port picked free can be taken by another test before the member binds it:
        // start again on fresh ports then.
        for _ in 0..5 {
            if let Some(c) = Self::try_start(n, timings, &tune).await {
                c.wait_for_leader(Duration::from_secs(20)).await;
                return c;
            }
        }
        panic!("could not find free ports for a {n}-member cluster");
    }

    async fn try_start(
        n: usize,
        timings: Timings,
        tune: &impl Fn(&mut StoreConfig),
    ) -> Option<OrbitCluster> {
        let dir = tempfile::tempdir().expect("temp dir");
        let peers: Vec<(String, String)> = (0..n)
            .map(|i| (format!("m{i}"), format!("http://127.0.0.1:{}", free_port())))
            .collect();
        let token = format!("test-{}", free_port());
        let configs: Vec<StoreConfig> = (0..n)
            .map(|i| StoreConfig {
                initial_cluster: peers.clone(),
                token: token.clone(),
                heartbeat_ms: timings.heartbeat_ms,
                election_ms: timings.election_ms,
                // Client port 0: the member binds any free port and advertises it.
                ..StoreConfig::single(
                    &peers[i].0,
                    dir.path().join(&peers[i].0),
                    "http://127.0.0.1:0",
                    &peers[i].1,
                )
            })
            .map(|mut c| {
                tune(&mut c);
                c
            })
            .collect();
        let mut nodes = Vec::new();
        for c in &configs {
            match StoreNode::start(c.clone()).await {
                Ok(node) => nodes.push(Some(node)),
                Err(e) if e.to_string().contains("in use") => {
                    for n in nodes.into_iter().flatten() {
                        n.shutdown().await;
                    }
                    return None;
                }
                Err(e) => panic!("starting a store member: {e}"),
            }
        }
        Some(OrbitCluster {
            nodes,
            configs,
            _dir: dir,
        })
    }

    /// Waits until every running member knows the same leader; returns its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<u64>> = self.running().map(|n| n.leader()).collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) {
                    if let Some(i) = self.index_of(*l) {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn running(&self) -> impl Iterator<Item = &Arc<StoreNode>> {
        self.nodes.iter().flatten()
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.id() == id))
    }

    /// The client URLs of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.running().map(|n| n.advertised_client_url()).collect()
    }

    /// An in-process handle on member `i`.
    pub fn embedded(&self, i: usize) -> EmbeddedKv {
        EmbeddedKv::new(self.nodes[i].clone().expect("member is running"))
    }

    /// A remote client of the whole cluster.
    pub async fn remote(&self) -> RemoteKv {
        RemoteKv::connect(&self.endpoints())
            .await
            .expect("connecting to the cluster")
    }

    /// Stops member `i` (its data stays).
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Restarts member `i` on its data dir (on a new client port).
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i] = Some(
            StoreNode::start(self.configs[i].clone())
                .await
                .expect("restarting a store member"),
        );
    }
}

impl Drop for OrbitCluster {
    fn drop(&mut self) {
        for n in self.nodes.iter().flatten() {
            let n = n.clone();
            // Shut down in the background: Drop cannot wait on the runtime.
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move { n.shutdown().await });
            }
        }
    }
}

/// A cluster of real etcd processes (Debian's `etcd-server`) on loopback.
pub struct EtcdCluster {
    children: Vec<Child>,
    endpoints: Vec<String>,
    dir: TempDir,
}

/// The etcd binary: `$ORBIT_ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("ORBIT_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl EtcdCluster {
    /// Starts an `n`-member etcd cluster with its default durability (fsync on every
    /// commit) and waits until it serves. Panics with advice if etcd is missing.
    pub async fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, &[]).await
    }

    /// As [`EtcdCluster::start`], with `extra` flags for every member.
    pub async fn start_with(n: usize, extra: &[&str]) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let peers: Vec<(String, u16, u16)> = (0..n)
            .map(|i| (format!("e{i}"), free_port(), free_port()))
            .collect();
        let initial: Vec<String> = peers
            .iter()
            .map(|(name, _, p)| format!("{name}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut children = Vec::new();
        for (name, client, peer) in &peers {
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
            let child = Command::new(etcd_binary())
                .arg("--name")
                .arg(name)
                .arg("--data-dir")
                .arg(dir.path().join(name))
                .arg("--listen-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-cluster")
                .arg(&initial)
                .arg("--initial-cluster-token")
                .arg(format!("etcd-{}", dir.path().display()))
                .arg("--initial-cluster-state")
                .arg("new")
                .args(extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {:?} ({e}); install Debian's etcd-server (scripts/setup.sh does)",
                        etcd_binary()
                    )
                });
            children.push(child);
        }
        let endpoints: Vec<String> = peers
            .iter()
            .map(|(_, c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        let cluster = EtcdCluster {
            children,
            endpoints,
            dir,
        };
        cluster.wait_ready(Duration::from_secs(30)).await;
        cluster
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(kv) = RemoteKv::connect(&self.endpoints).await {
                if kv.get(b"ready").await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    /// The members' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }

    /// Member `i`'s data dir (its names are `e0`, `e1`, ...).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("e{i}"))
    }

    /// A client of the cluster.
    pub async fn remote(&self) -> RemoteKv {
        RemoteKv::connect(&self.endpoints)
            .await
            .expect("connecting to etcd")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `member` serves, from its own state, `count` keys under `prefix` at a
/// revision of at least `revision`: a member that was behind has caught up.
pub async fn wait_caught_up(
    member: &dyn Kv,
    prefix: &str,
    count: i64,
    revision: i64,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = member
            .range(orbit_kv::RangeRequest {
                serializable: true,
                count_only: true,
                ..orbit_kv::RangeRequest::prefix(prefix)
            })
            .await;
        if matches!(&r, Ok(r) if r.count == count && r.revision >= revision) {
            return;
        }
        assert!(Instant::now() < deadline, "never caught up: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
