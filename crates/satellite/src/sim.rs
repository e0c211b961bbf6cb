//! `satellite sim`: a whole orbit network on one machine, every part its own OS
//! process on loopback — the version server, three API replicas growing their store
//! in incremental mode, two loops (one active by election), repair, audit, gc,
//! accounting, uptime, the private API, and N storage nodes. Its directory keeps the
//! layout (`sim.toml`, with the ports chosen at creation), the configuration, every
//! data dir and log, and the access grant; running it again on the same directory
//! brings the same network back.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use orbit_kv::{Kv, RemoteKv};
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Sim subcommands.
#[derive(Subcommand)]
pub enum SimCommand {
    /// Start the network (set it up first if DIR holds none); Ctrl-C stops it all.
    Run(RunArgs),
    /// Remove a stopped network's directory.
    Destroy(DestroyArgs),
}

/// Flags of `sim run`.
#[derive(Args)]
pub struct RunArgs {
    /// Storage nodes (a network set up with fewer gets more; never fewer).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// The network's directory.
    #[arg(long)]
    dir: PathBuf,
    /// The `storagenode` binary (default: beside this one).
    #[arg(long)]
    storagenode: Option<PathBuf>,
}

/// Flags of `sim destroy`.
#[derive(Args)]
pub struct DestroyArgs {
    /// The network's directory.
    #[arg(long)]
    dir: PathBuf,
}

/// The layout's format version.
const LAYOUT_VERSION: u32 = 1;

/// The satellite's processes: their names and `satellite run` process, in start order
/// (replica ids are 1, 2, … in this order; the API replicas come first, so they are
/// the ones the store grows onto).
const PROCESSES: [(&str, &str); 11] = [
    ("api1", "api"),
    ("api2", "api"),
    ("api3", "api"),
    ("loop1", "loop"),
    ("loop2", "loop"),
    ("repair", "repair"),
    ("audit", "audit"),
    ("gc", "gc"),
    ("accounting", "accounting"),
    ("uptime", "uptime"),
    ("private-api", "private-api"),
];

/// Ports of one satellite process.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProcessPorts {
    status: u16,
    client: u16,
    peer: u16,
    api: u16,
}

/// Ports of one storage node.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodePorts {
    listen: u16,
    debug: u16,
}

/// `sim.toml`: what `sim run` set up, read back on every run.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Layout {
    /// [`LAYOUT_VERSION`].
    v: u32,
    token: String,
    private_api_token: String,
    version: u16,
    private_api: u16,
    processes: Vec<ProcessPorts>,
    nodes: Vec<NodePorts>,
}

/// Hands out ports free now, each once, below Linux's ephemeral range (32768 and up):
/// the kernel gives ports there to outgoing connections, and the network's own
/// processes open many, so a port picked there could be taken before its server binds.
struct Ports {
    next: u16,
    given: std::collections::HashSet<u16>,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            next: 20_000 + rand::random::<u16>() % 12_000,
            given: Default::default(),
        }
    }

    fn take(&mut self) -> anyhow::Result<u16> {
        for _ in 0..12_000 {
            let p = self.next;
            self.next = if p >= 31_999 { 20_000 } else { p + 1 };
            if self.given.insert(p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                return Ok(p);
            }
        }
        bail!("no free port between 20000 and 32000 on 127.0.0.1")
    }
}

fn secret() -> String {
    orbit_identity::hex_encode(&rand::random::<[u8; 16]>())
}

impl Layout {
    fn create(nodes: usize) -> anyhow::Result<Layout> {
        let mut ports = Ports::new();
        let mut free_port = || ports.take();
        let mut l = Layout {
            v: LAYOUT_VERSION,
            token: format!("sim-{}", secret()),
            private_api_token: secret(),
            version: free_port()?,
            private_api: free_port()?,
            processes: Vec::new(),
            nodes: Vec::new(),
        };
        for _ in PROCESSES {
            l.processes.push(ProcessPorts {
                status: free_port()?,
                client: free_port()?,
                peer: free_port()?,
                api: free_port()?,
            });
        }
        l.grow(nodes)?;
        Ok(l)
    }

    /// Adds nodes up to `nodes`, on ports no process of the layout has.
    fn grow(&mut self, nodes: usize) -> anyhow::Result<()> {
        let mut ports = Ports::new();
        ports.given.extend([self.version, self.private_api]);
        for p in &self.processes {
            ports.given.extend([p.status, p.client, p.peer, p.api]);
        }
        for n in &self.nodes {
            ports.given.extend([n.listen, n.debug]);
        }
        let mut free_port = || ports.take();
        while self.nodes.len() < nodes {
            self.nodes.push(NodePorts {
                listen: free_port()?,
                debug: free_port()?,
            });
        }
        Ok(())
    }

    fn read(path: &Path) -> anyhow::Result<Layout> {
        let text = std::fs::read_to_string(path)?;
        let l: Layout = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        if l.v != LAYOUT_VERSION || l.processes.len() != PROCESSES.len() {
            bail!(
                "{} is layout version {} with {} processes; this satellite reads version {LAYOUT_VERSION} with {}",
                path.display(),
                l.v,
                l.processes.len(),
                PROCESSES.len()
            );
        }
        Ok(l)
    }

    fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.processes[0].api)
    }

    /// The satellite's configuration: every process reads the same file.
    fn config(&self, dir: &Path) -> String {
        let rows: String = self
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "[[replica]]\nid = {}\nstore_name = \"{}\"\nclient_url = \"http://127.0.0.1:{}\"\npeer_url = \"http://127.0.0.1:{}\"\nstore_node = false\n\n",
                    i + 1,
                    PROCESSES[i].0,
                    p.client,
                    p.peer
                )
            })
            .collect();
        let identity = dir.join("satellite.key");
        // Short intervals: a developer sees repair and audits within a minute.
        format!(
            "# Written by `satellite sim run`; edit it and run again to change the network.\n\
             replica_id = 1 # each process is given its own with --replica-id\n\
             mode = \"incremental\"\n\
             token = \"{token}\"\n\
             max_store_nodes = 3\n\n\
             [storage]\n\
             identity = {identity:?}\n\
             distinct_networks = false\n\
             online_window_s = 10\n\n\
             [version]\n\
             url = \"http://127.0.0.1:{version}\"\n\n\
             [version.server]\n\
             addr = \"127.0.0.1:{version}\"\n\n\
             [loop]\ninterval_s = 30\n\n\
             [repair]\ninterval_s = 10\n\n\
             [audit]\ninterval_s = 30\n\n\
             [gc]\ninterval_s = 120\n\n\
             [uptime]\ninterval_s = 5\nstale_s = 4\n\n\
             [accounting]\ninterval_s = 60\n\n\
             [private_api]\n\
             addr = \"127.0.0.1:{private}\"\n\
             token = \"{private_token}\"\n\n\
             {rows}",
            token = self.token,
            identity = identity.display().to_string(),
            version = self.version,
            private = self.private_api,
            private_token = self.private_api_token,
        )
    }
}

/// Writes `text` to `path` readable by its owner only (it holds secrets).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs a sim subcommand.
pub async fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Run(a) => sim_run(a).await,
        SimCommand::Destroy(a) => destroy(&a.dir),
    }
}

/// Takes the directory's lock: one `sim run` per directory, and no destroy under it.
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("sim.lock"))?;
    if f.try_lock().is_err() {
        bail!(
            "a sim is running on {} (stop it with Ctrl-C)",
            dir.display()
        );
    }
    Ok(f)
}

fn destroy(dir: &Path) -> anyhow::Result<()> {
    // Only a sim's own directory is removed: a mistyped --dir must not wipe anything else.
    if !dir.join("sim.toml").exists() {
        bail!(
            "{} holds no sim network (no sim.toml); nothing removed",
            dir.display()
        );
    }
    let _lock = lock(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    println!("removed {}", dir.display());
    Ok(())
}

/// A running child and what it is.
struct Proc {
    name: String,
    child: Child,
}

/// Starts `bin args…` with its stderr (and stdout) appended to `logs/<name>.log`.
fn spawn(dir: &Path, name: &str, bin: &Path, args: &[String]) -> anyhow::Result<Proc> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{name}.log")))?;
    let child = Command::new(bin)
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name} ({})", bin.display()))?;
    if let Some(pid) = child.id() {
        std::fs::write(dir.join("pids").join(name), pid.to_string())?;
    }
    Ok(Proc {
        name: name.into(),
        child,
    })
}

/// Waits until `ok` holds, checking every 200 ms, for up to `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut ok: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !ok().await {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?} (see the logs)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The replica ids live in the table.
async fn live_replicas(kv: &dyn Kv, token: &str) -> usize {
    orbit_replica::table::read_table(kv, token)
        .await
        .map(|rows| rows.iter().filter(|r| r.live).count())
        .unwrap_or(0)
}

async fn sim_run(a: RunArgs) -> anyhow::Result<()> {
    let dir = &a.dir;
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("pids"))?;
    let dir = &std::fs::canonicalize(dir)?;
    let _lock = lock(dir)?;
    let layout_path = dir.join("sim.toml");
    let mut layout = match layout_path.exists() {
        true => Layout::read(&layout_path)?,
        false => Layout::create(a.nodes)?,
    };
    if layout.nodes.len() > a.nodes {
        println!(
            "this network has {} nodes; all of them run (it never shrinks)",
            layout.nodes.len()
        );
    }
    layout.grow(a.nodes)?;
    write_private(&layout_path, &toml::to_string(&layout)?)?;
    let config = dir.join("satellite.toml");
    if !config.exists() {
        write_private(&config, &layout.config(dir))?;
    }
    let me = std::env::current_exe()?;
    let storagenode = a
        .storagenode
        .clone()
        .unwrap_or_else(|| me.with_file_name("storagenode"));
    if !storagenode.exists() {
        bail!(
            "no storagenode binary at {} (build it, or give --storagenode)",
            storagenode.display()
        );
    }
    let mut procs: Vec<Proc> = Vec::new();
    let result = start_all(dir, &layout, &config, &me, &storagenode, &mut procs).await;
    if let Err(e) = result {
        eprintln!("sim: {e:#}; stopping what started");
        stop_all(&mut procs).await;
        return Err(e);
    }
    supervise(&mut procs).await?;
    stop_all(&mut procs).await;
    println!(
        "sim stopped; `satellite sim run --dir {}` starts it again",
        dir.display()
    );
    Ok(())
}

async fn start_all(
    dir: &Path,
    layout: &Layout,
    config: &Path,
    me: &Path,
    storagenode: &Path,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<()> {
    let cfg = config.display().to_string();
    procs.push(spawn(
        dir,
        "version",
        me,
        &[
            "run".into(),
            "version".into(),
            "--config".into(),
            cfg.clone(),
        ],
    )?);
    let version = format!("127.0.0.1:{}", layout.version);
    wait_for("the version server", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(&version).await.is_ok()
    })
    .await?;
    let start = |i: usize| -> anyhow::Result<Proc> {
        let (name, process) = PROCESSES[i];
        let p = &layout.processes[i];
        let mut args: Vec<String> = vec![
            "run".into(),
            process.into(),
            "--config".into(),
            cfg.clone(),
            "--replica-id".into(),
            (i + 1).to_string(),
            "--data-dir".into(),
            dir.join("data").join(name).display().to_string(),
            "--status-addr".into(),
            format!("127.0.0.1:{}", p.status),
        ];
        if process == "api" {
            args.extend(["--api-addr".into(), format!("127.0.0.1:{}", p.api)]);
        }
        spawn(dir, name, me, &args)
    };
    // The first API replica forms the store; the rest join as it grows.
    procs.push(start(0)?);
    let first = format!("http://127.0.0.1:{}", layout.processes[0].client);
    let deadline = Instant::now() + Duration::from_secs(60);
    let kv: Arc<dyn Kv> = loop {
        if let Ok(c) = RemoteKv::connect(std::slice::from_ref(&first)).await {
            if live_replicas(&c, &layout.token).await >= 1 {
                break Arc::new(c);
            }
        }
        if Instant::now() > deadline {
            bail!("the first API replica's store did not answer within 60 s (see logs/api1.log)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for i in 1..PROCESSES.len() {
        procs.push(start(i)?);
    }
    let n = PROCESSES.len();
    wait_for(
        "every satellite process",
        Duration::from_secs(120),
        || async { live_replicas(&*kv, &layout.token).await == n },
    )
    .await?;
    let identity = orbit_identity::Identity::load_or_create(&dir.join("satellite.key"))?;
    let key = orbit_identity::hex_encode(&identity.public().0);
    let url = layout.api_url();
    for (i, ports) in layout.nodes.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let node_dir = dir.join("nodes").join(&name);
        if !node_dir.join("storagenode.toml").exists() {
            let out = std::process::Command::new(storagenode)
                .args(["setup", "--dir"])
                .arg(&node_dir)
                .args(["--satellite-url", &url, "--satellite-key", &key])
                .args(["--capacity", &(1u64 << 30).to_string()])
                .args(["--listen", &format!("127.0.0.1:{}", ports.listen)])
                .args(["--debug-addr", &format!("127.0.0.1:{}", ports.debug)])
                .args(["--check-in-s", "2"])
                .output()?;
            if !out.status.success() {
                bail!(
                    "setting up {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let args = vec!["run".into(), "--dir".into(), node_dir.display().to_string()];
        procs.push(spawn(dir, &name, storagenode, &args)?);
    }
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let want = layout.nodes.len();
    wait_for(
        "every storage node's check-in",
        Duration::from_secs(60),
        || async {
            nodes
                .all()
                .await
                .map(|all| all.len() >= want)
                .unwrap_or(false)
        },
    )
    .await?;
    let access_path = dir.join("access");
    if !access_path.exists() {
        let api_key = ApiKeys::new(kv.clone()).create("sim").await?;
        let access =
            uplink::project::Access::new(&url, identity.public(), &api_key.serialize(), "sim")?;
        write_private(&access_path, &access.serialize())?;
    }
    let access = std::fs::read_to_string(&access_path)?;
    print_table(dir, layout, &key, access.trim());
    Ok(())
}

fn print_table(dir: &Path, layout: &Layout, key: &str, access: &str) {
    println!("orbit sim in {}", dir.display());
    println!("  satellite key    {key}");
    println!("  version server   http://127.0.0.1:{}", layout.version);
    for (i, (name, process)) in PROCESSES.iter().enumerate() {
        let p = &layout.processes[i];
        let api = match *process {
            "api" => format!("  API https://127.0.0.1:{}", p.api),
            _ => String::new(),
        };
        println!(
            "  {name:<16} status http://127.0.0.1:{}/status{api}",
            p.status
        );
    }
    let pin = orbit_identity::PublicKey::parse(key)
        .map(|k| orbit_tls::curl_pin(&k))
        .unwrap_or_default();
    println!(
        "  private API      https://127.0.0.1:{} (token in satellite.toml; curl -k --pinnedpubkey '{pin}')",
        layout.private_api
    );
    for (i, n) in layout.nodes.iter().enumerate() {
        println!(
            "  node{:<12} https://127.0.0.1:{}  metrics http://127.0.0.1:{}/metrics",
            i + 1,
            n.listen,
            n.debug
        );
    }
    println!("  logs             {}", dir.join("logs").display());
    println!("access grant (also in {}):", dir.join("access").display());
    println!("{access}");
    println!(
        "try: uplink mb orbit://demo --access \"$(cat {})\"",
        dir.join("access").display()
    );
    println!("sim ready; Ctrl-C stops it");
}

/// Waits for Ctrl-C or SIGTERM, saying when a process exits on its own (a node
/// killed by hand to watch repair is expected; the rest go on).
async fn supervise(procs: &mut [Proc]) -> anyhow::Result<()> {
    let stop = crate::until_stopped();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut gone = vec![false; procs.len()];
    loop {
        tokio::select! {
            r = &mut stop => return Ok(r?),
            _ = tick.tick() => {
                for (p, gone) in procs.iter_mut().zip(gone.iter_mut()) {
                    if *gone {
                        continue;
                    }
                    if let Ok(Some(status)) = p.child.try_wait() {
                        println!("sim: {} exited ({status}); the rest go on", p.name);
                        *gone = true;
                    }
                }
            }
        }
    }
}

/// Stops every process, the last started first: SIGTERM, then SIGKILL after 10 s.
async fn stop_all(procs: &mut Vec<Proc>) {
    while let Some(mut p) = procs.pop() {
        if let Some(pid) = p.child.id() {
            // SAFETY: kill(2) on our own child's pid, which it still is until waited.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("sim: {} did not stop in 10 s; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
}
