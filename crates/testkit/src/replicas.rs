//! `satellite run <process>` replica processes for tests and benchmarks: their
//! configuration, status endpoint and lifecycle.

use crate::free_port;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on a status endpoint: the status code and body (0 when unreachable).
pub async fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path, "", "").await
}

/// `POST path` with `Authorization: Bearer <token>` (none when empty).
pub async fn post(port: u16, path: &str, token: &str) -> (u16, String) {
    send(port, "POST", path, token, "").await
}

/// `method path` with `Authorization: Bearer <token>` (none when empty) and a JSON
/// `body` (none when empty).
pub async fn send(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let headers = headers(token, body);
    request(port, method, path, &headers, body).await
}

/// The bearer token and content type headers of a request.
fn headers(token: &str, body: &str) -> String {
    let mut headers = match token {
        "" => String::new(),
        t => format!("Authorization: Bearer {t}\r\n"),
    };
    if !body.is_empty() {
        headers += "Content-Type: application/json\r\n";
    }
    headers
}

/// As [`send`], over TLS to a server that must hold `key` (the private API, which
/// serves the satellite's identity).
pub async fn send_tls(
    port: u16,
    key: &orbit_identity::PublicKey,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let headers = headers(token, body);
    let connector = orbit_tls::PinnedConnector::http1(orbit_tls::Expect::Key(*key));
    let Ok(s) = connector.stream(&format!("127.0.0.1:{port}")).await else {
        return (0, String::new());
    };
    let r = request_on(s, method, path, &headers, body).await;
    (r.code, r.body)
}

/// One HTTP/1.0 request with extra `headers` (each ending in CRLF) and `body`.
async fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let r = exchange(port, method, path, headers, body).await;
    (r.code, r.body)
}

/// An HTTP answer: status (0 when unreachable), headers (names lowercased), body.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The status code.
    pub code: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (asserting it is).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} answered {:?}: {e}", self.code, self.body))
    }
}

/// `method path` with `headers` (name, value) and `body` (sent as JSON when not
/// empty); the whole answer.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut h: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    if !body.is_empty() {
        h += "Content-Type: application/json\r\n";
    }
    exchange(port, method, path, &h, body).await
}

async fn exchange(port: u16, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Answer::default();
    };
    request_on(s, method, path, headers, body).await
}

/// One HTTP/1.0 request on the connection `s`.
async fn request_on(
    mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Answer {
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return Answer::default();
    }
    let mut buf = String::new();
    // A triggered worker answers when its run is done: a repair or audit round.
    let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut buf)).await;
    if !matches!(read, Ok(Ok(_))) {
        return Answer::default();
    }
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        code,
        headers,
        body: body.to_string(),
    }
}

/// Waits until `GET /health` answers `want`.
pub async fn wait_health(port: u16, want: u16, timeout: Duration) {
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
pub async fn wait_status(port: u16, ok: impl Fn(&str) -> bool) -> String {
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

/// `GET /status` as JSON (asserting it answers).
pub async fn status(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Which of the replicas `candidates` leads the elected process whose status
/// section is `section` (`loop`, `uptime`), once exactly one does; asserts that
/// never two lead at once.
pub async fn leader(r: &Replicas, section: &str, candidates: &[usize], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = Vec::new();
        for &i in candidates {
            let (code, body) = get(r.status[i], "/status").await;
            if code == 200 {
                let s: serde_json::Value = serde_json::from_str(&body).unwrap();
                if s[section]["leader"] == true {
                    leaders.push(i);
                }
            }
        }
        assert!(
            leaders.len() <= 1,
            "two {section} processes lead at once: {leaders:?}"
        );
        if let [i] = leaders[..] {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "no {section} process leads within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Triggers a pass on loop replica `i`, waits for it, and returns its report.
pub async fn pass(r: &Replicas, i: usize) -> serde_json::Value {
    trigger(r, i, "segment-loop").await;
    status(r.status[i]).await["loop"]["last_pass"].clone()
}

/// Triggers worker `name` on replica `i` and waits for its run (asserting it ran
/// without error).
pub async fn trigger(r: &Replicas, i: usize, name: &str) {
    let (code, body) = post(
        r.status[i],
        &format!("/workers/{name}/trigger"),
        "replica-test",
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "ok\n"),
        "{name} on replica {}",
        i + 1
    );
}

/// Test timings: fast Raft, a replica dead 2 s after its last heartbeat.
pub const TIMINGS: &str =
    "heartbeat_ms = 50\nelection_ms = 500\nreplica_heartbeat_ms = 300\nreplica_ttl_s = 2\n";

/// A set of replica processes sharing one table, each with its data dir and log.
pub struct Replicas {
    /// The `satellite` binary.
    bin: PathBuf,
    /// Client URL ports of the table's rows.
    pub clients: Vec<u16>,
    /// The rows' client URL scheme (`https` for a store with TLS).
    scheme: &'static str,
    /// Temp dir holding configurations, data dirs and logs.
    pub dir: tempfile::TempDir,
    /// Configuration file of each replica (all the same unless changed).
    pub configs: Vec<PathBuf>,
    /// Status endpoint port of each replica.
    pub status: Vec<u16>,
    /// Public API port of each replica.
    pub api: Vec<u16>,
    procs: Vec<Option<Child>>,
    /// Environment of the processes, besides the test's own.
    env: Vec<(String, String)>,
}

impl Replicas {
    /// `n` replicas of the `bin` satellite in `mode` with the rows in `table`.
    pub fn new(bin: &Path, table: &str, mode: &str, n: usize) -> Replicas {
        Self::with(bin, table, mode, n, "")
    }

    /// Like [`Replicas::new`], with more settings in the configuration's header.
    pub fn with(bin: &Path, table: &str, mode: &str, n: usize, extra: &str) -> Replicas {
        Self::timed(bin, table, mode, n, &format!("{TIMINGS}{extra}"))
    }

    /// Like [`Replicas::with`], with `header` in place of the test timings: a header
    /// without timings runs the shipped defaults.
    pub fn timed(bin: &Path, table: &str, mode: &str, n: usize, header: &str) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("replicas.toml");
        std::fs::write(
            &config,
            format!(
                "replica_id = 1\nmode = \"{mode}\"\ntoken = \"replica-test\"\n{header}\n{table}"
            ),
        )
        .unwrap();
        Replicas {
            bin: bin.to_path_buf(),
            scheme: if table.contains("client_url = \"https://") {
                "https"
            } else {
                "http"
            },
            clients: table
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("client_url = \"http://127.0.0.1:")
                        .or_else(|| l.strip_prefix("client_url = \"https://127.0.0.1:"))
                })
                .filter_map(|p| p.trim_end_matches('"').parse().ok())
                .collect(),
            dir,
            configs: (0..n).map(|_| config.clone()).collect(),
            status: (0..n).map(|_| free_port()).collect(),
            api: (0..n).map(|_| free_port()).collect(),
            procs: (0..n).map(|_| None).collect(),
            // No version server in most tests: the development setting. Tests of the
            // check set it back to "false".
            env: vec![("ORBIT_VERSION_UNCHECKED".into(), "true".into())],
        }
    }

    /// The shared configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("replicas.toml")
    }

    /// Gives replica `i` its own configuration text.
    pub fn set_config(&mut self, i: usize, text: &str) {
        let path = self.dir.path().join(format!("r{i}.toml"));
        std::fs::write(&path, text).unwrap();
        self.configs[i] = path;
    }

    /// Data dir of replica `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("r{i}"))
    }

    /// Log of replica `i` so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("r{i}.log"))).unwrap_or_default()
    }

    /// Sets an environment variable of the processes started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// Starts replica `i` (id `i + 1`) as `satellite run api`; its log is appended to.
    pub fn spawn(&mut self, i: usize) {
        self.spawn_as(i, "api");
    }

    /// Starts replica `i` as `satellite run <process>` (`api`, `loop`, ...).
    pub fn spawn_as(&mut self, i: usize, process: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("r{i}.log")))
            .unwrap();
        let api_addr = format!("127.0.0.1:{}", self.api[i]);
        let api_flags: &[&str] = match process {
            "api" | "all" => &["--api-addr", &api_addr],
            _ => &[],
        };
        let child = Command::new(&self.bin)
            .args(["run", process, "--config"])
            .arg(&self.configs[i])
            .args(["--replica-id", &(i + 1).to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--status-addr", &format!("127.0.0.1:{}", self.status[i])])
            .args(api_flags)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs[i] = Some(child);
    }

    /// Replica `i`'s exit status if it has exited (it is then no longer running).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.procs[i].as_mut()?.try_wait().ok()??;
        self.procs[i] = None;
        Some(status)
    }

    /// Whether replica `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    /// URL of replica `i`'s public API.
    pub fn api_url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.api[i])
    }

    /// The satellite key replica `i` serves its API with, once it has started: its
    /// `[storage] identity`, by default `satellite.key` in its data dir.
    pub fn satellite_key(&self, i: usize) -> orbit_identity::PublicKey {
        let path = self.data_dir(i).join("satellite.key");
        orbit_identity::Identity::load(&path)
            .unwrap_or_else(|e| panic!("replica {}'s satellite identity: {e}", i + 1))
            .public()
    }

    /// Client URL of row `i`.
    pub fn client_url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.clients[i])
    }

    /// Asks replica `i` to stop (SIGTERM) and waits up to `timeout` for it; its exit
    /// status, or `None` if it did not stop in time (it is then killed).
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.procs[i].take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGKILLs replica `i`.
    pub fn kill(&mut self, i: usize) {
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
        if std::env::var_os("ORBIT_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("replica dirs and logs kept in {}", kept.display());
        }
        if std::thread::panicking() {
            for i in 0..self.procs.len() {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- replica {} log (last lines) ---", i + 1);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// A `[[replica]]` row with fresh loopback URLs given by port.
pub fn row(id: usize, client: u16, peer: u16, store_node: bool) -> String {
    row_with("http", id, client, peer, store_node)
}

/// As [`row`], with `https://` URLs: for a store with TLS (`[store_tls]`).
pub fn row_tls(id: usize, client: u16, peer: u16, store_node: bool) -> String {
    row_with("https", id, client, peer, store_node)
}

fn row_with(scheme: &str, id: usize, client: u16, peer: u16, store_node: bool) -> String {
    format!(
        "[[replica]]\nid = {id}\nstore_name = \"n{id}\"\nclient_url = \"{scheme}://127.0.0.1:{client}\"\npeer_url = \"{scheme}://127.0.0.1:{peer}\"\nstore_node = {store_node}\n"
    )
}
