//! `satellite run api` replicas in `fixed` and `external` mode, as separate processes.

use orbit_testkit::{free_port, EtcdCluster};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on a status endpoint: the status code and body (0 when unreachable).
async fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf)).await;
    if !matches!(read, Ok(Ok(_))) {
        return (0, String::new());
    }
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// Waits until `GET /health` answers `want`.
async fn wait_health(port: u16, want: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = get(port, "/health").await;
        if code == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health on :{port} is {code} ({body}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `GET /status` satisfies `ok`; returns it.
async fn wait_status(port: u16, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(port, "/status").await;
        if ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "status never got there: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `satellite storage status` until its replica table satisfies `ok`.
async fn wait_table(endpoints: &[String], ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
            .args([
                "storage",
                "status",
                "--token",
                "replica-test",
                "--endpoints",
                &endpoints.join(","),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let table = text.split("REPLICA").nth(1).unwrap_or("").to_string();
        if ok(&table) {
            return table;
        }
        assert!(
            Instant::now() < deadline,
            "replica table never got there: {text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

struct Replicas {
    clients: Vec<u16>,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    status: Vec<u16>,
    procs: Vec<Option<Child>>,
}

impl Replicas {
    fn new(table: &str, mode: &str, n: usize) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("replicas.toml");
        std::fs::write(
            &config,
            format!("replica_id = 1\nmode = \"{mode}\"\ntoken = \"replica-test\"\nheartbeat_ms = 50\nelection_ms = 500\nreplica_heartbeat_ms = 300\nreplica_ttl_s = 2\n{table}"),
        )
        .unwrap();
        Replicas {
            clients: table
                .lines()
                .filter_map(|l| l.strip_prefix("client_url = \"http://127.0.0.1:"))
                .filter_map(|p| p.trim_end_matches('"').parse().ok())
                .collect(),
            dir,
            config,
            status: (0..n).map(|_| free_port()).collect(),
            procs: (0..n).map(|_| None).collect(),
        }
    }

    /// Starts replica `i` (id `i + 1`).
    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("r{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_satellite"))
            .args(["run", "api", "--config"])
            .arg(&self.config)
            .args(["--replica-id", &(i + 1).to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("r{i}")))
            .args(["--status-addr", &format!("127.0.0.1:{}", self.status[i])])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs[i] = Some(child);
    }

    fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.clients[i])
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

fn row(id: usize, client: u16, peer: u16, store_node: bool) -> String {
    format!(
        "[[replica]]\nid = {id}\nstore_name = \"n{id}\"\nclient_url = \"http://127.0.0.1:{client}\"\npeer_url = \"http://127.0.0.1:{peer}\"\nstore_node = {store_node}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_mode_works_while_a_quorum_of_store_replicas_is_up() {
    // Replicas 1-3 run store members, replica 4 only uses them.
    let table: String = (1..=4)
        .map(|id| row(id, free_port(), free_port(), id <= 3))
        .collect();
    let mut r = Replicas::new(&table, "fixed", 4);
    for i in 0..4 {
        r.spawn(i);
    }
    for i in 0..4 {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    // Members publish their names shortly after the cluster forms.
    let status = wait_status(r.status[3], |s| s.matches("\"name\":\"n").count() == 3).await;
    assert!(status.contains("\"runs_store_member\":false"), "{status}");
    let (_, status) = get(r.status[0], "/status").await;
    assert!(status.contains("\"runs_store_member\":true"), "{status}");
    // Every replica heartbeats its row; `storage status` shows the table.
    let clients: Vec<String> = (0..3).map(|i| r.client_url(i)).collect();
    let table = wait_table(&clients, |t| t.matches(" live ").count() == 4).await;
    assert_eq!(table.matches(" yes ").count(), 3, "{table}");

    // One store replica down: everyone still works, and its row goes dead once its
    // lease expires.
    r.kill(0);
    for i in 1..4 {
        wait_health(r.status[i], 200, Duration::from_secs(15)).await;
    }
    let table = wait_table(&clients[1..], |t| t.matches(" dead ").count() == 1).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains(" dead ")),
        "{table}"
    );
    // Two of three down: no quorum, the store-less replica reports it.
    r.kill(1);
    wait_health(r.status[3], 503, Duration::from_secs(15)).await;
    // Back to a quorum: healthy again, on the same data dirs.
    r.spawn(0);
    wait_health(r.status[3], 200, Duration::from_secs(30)).await;
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_mode_uses_a_real_etcd() {
    let etcd = EtcdCluster::start(3).await;
    let table: String = etcd
        .endpoints()
        .iter()
        .enumerate()
        .map(|(i, url)| {
            format!(
                "[[replica]]\nid = {}\nstore_name = \"e{i}\"\nclient_url = \"{url}\"\n",
                i + 1
            )
        })
        .collect();
    let mut r = Replicas::new(&table, "external", 2);
    r.spawn(0);
    r.spawn(1);
    for i in 0..2 {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
        let status = wait_status(r.status[i], |s| s.matches("\"name\":\"e").count() == 3).await;
        assert!(status.contains("\"mode\":\"external\""), "{status}");
    }
}

#[test]
fn a_wrong_table_is_refused_at_start() {
    let table = format!("{}{}", row(1, 1, 2, true), row(1, 3, 4, true));
    let r = Replicas::new(&table, "fixed", 1);
    let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
        .args(["run", "api", "--config"])
        .arg(&r.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replica id 1 appears twice"), "{err}");
}
