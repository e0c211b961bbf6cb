//! Storage node processes for tests: this build's `storagenode`, set up and run in
//! temporary directories, killed, stopped and restarted.

use orbit_identity::{Identity, NodeId};
use orbit_satellite_model::nodes::Nodes;
use orbit_satellite_model::unix_now;
use orbit_testkit::free_port;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::replicas::satellite;

/// This build's storagenode binary (beside the satellite's; built if missing, as
/// when only this package's tests were built).
pub fn storagenode() -> PathBuf {
    sibling("storagenode")
}

/// This build's uplink command line, as [`storagenode`].
pub fn uplink_cli() -> PathBuf {
    sibling("uplink")
}

/// The binary of package `name` beside the satellite's, built if missing.
fn sibling(name: &str) -> PathBuf {
    let bin = satellite().with_file_name(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-q", "-p", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && bin.exists(), "build it: cargo build -p {name}");
    }
    bin
}

/// Storage node processes, each in its own directory.
pub struct StorageNodes {
    /// Where their directories and logs are.
    pub dir: tempfile::TempDir,
    /// Each node's process, while it runs.
    pub procs: Vec<Option<Child>>,
    /// Each node's id.
    pub ids: Vec<NodeId>,
}

impl StorageNodes {
    /// No nodes yet.
    pub fn new() -> StorageNodes {
        StorageNodes {
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Sets up and starts one more node trusting the satellite at `url`.
    pub fn start(&mut self, url: &str, key: &str) -> usize {
        self.start_with(url, key, "")
    }

    /// Like [`StorageNodes::start`], with `extra` top-level settings in the node's
    /// `storagenode.toml`.
    pub fn start_with(&mut self, url: &str, key: &str, extra: &str) -> usize {
        let i = self.procs.len();
        let dir = self.dir.path().join(format!("node{i}"));
        let out = Command::new(storagenode())
            .args(["setup", "--dir"])
            .arg(&dir)
            .args(["--satellite-url", url, "--satellite-key", key])
            .args(["--capacity", &(1u64 << 30).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--check-in-s", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !extra.is_empty() {
            // Top-level keys go before the `[[satellite]]` table.
            let path = dir.join("storagenode.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{extra}\n{text}")).unwrap();
        }
        let id = Identity::load_or_create(&dir.join("identity.key"))
            .unwrap()
            .id();
        self.procs.push(None);
        self.ids.push(id);
        self.run(i);
        i
    }

    /// Starts node `i`'s process (again) on its directory.
    pub fn run(&mut self, i: usize) {
        let dir = self.dir.path().join(format!("node{i}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{i}.log")))
            .unwrap();
        let child = Command::new(storagenode())
            .args(["run", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs[i] = Some(child);
    }

    /// Sends node `i`'s process `signal` (`STOP`, `CONT`).
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.procs[i].as_ref().expect("a running node").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Node `i`'s directory.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The nodes whose processes run.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].is_some())
            .collect()
    }
}

impl Drop for StorageNodes {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Waits until the node table shows exactly the nodes `alive` online.
pub async fn wait_nodes(nodes: &Nodes, alive: &HashSet<NodeId>, window_s: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = unix_now();
        let online: HashSet<NodeId> = nodes
            .all()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.online(now, window_s))
            .map(|n| n.id)
            .collect();
        if &online == alive {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "online nodes never became the live ones"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every file under `dir`, recursively.
pub fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
