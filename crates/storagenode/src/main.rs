//! `storagenode`: set up and run an orbit storage node. Thin: the work is in
//! [`storagenode::node`].

/// mimalloc: large piece and segment buffers are reused instead of being mapped and
/// zeroed afresh by the system allocator each time (docs/network.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use storagenode::node::{Node, NodeConfig};

/// orbit storage node.
#[derive(Parser)]
#[command(name = "storagenode", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node's directory: its identity (0600) and `storagenode.toml`.
    Setup {
        /// The node's directory.
        #[arg(long, env = "ORBIT_NODE_DIR")]
        dir: PathBuf,
        /// The satellite's API URL.
        #[arg(long)]
        satellite_url: String,
        /// The satellite's public key (hex; `satellite run api` prints it).
        #[arg(long)]
        satellite_key: String,
        /// Bytes of pieces to store.
        #[arg(long, default_value_t = 10 << 30)]
        capacity: u64,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:7779")]
        listen: String,
        /// Seconds between check-ins.
        #[arg(long, default_value_t = 60)]
        check_in_s: u64,
        /// Where to serve Prometheus metrics (`GET /metrics`); none if not given.
        #[arg(long)]
        debug_addr: Option<String>,
        /// The URL the satellite and uplinks reach the node on, when it is not the
        /// listen address (a node behind NAT, or listening on 0.0.0.0).
        #[arg(long)]
        external_url: Option<String>,
    },
    /// Run the node set up in a directory.
    Run {
        /// The node's directory.
        #[arg(long, env = "ORBIT_NODE_DIR")]
        dir: PathBuf,
    },
    /// What the node holds and what each satellite says of it: reputation, audits,
    /// suspension, disqualification. Safe beside a running node.
    Status {
        /// The node's directory.
        #[arg(long, env = "ORBIT_NODE_DIR")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load(dir: &std::path::Path) -> anyhow::Result<NodeConfig> {
    let path = dir.join("storagenode.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run storagenode setup first)", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORBIT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Setup {
            dir,
            satellite_url,
            satellite_key,
            capacity,
            listen,
            check_in_s,
            debug_addr,
            external_url,
        } => {
            std::fs::create_dir_all(&dir)?;
            let id = orbit_identity::Identity::load_or_create(&dir.join("identity.key"))?;
            let mut extra = debug_addr
                .map(|a| format!("debug_addr = {a:?}\n"))
                .unwrap_or_default();
            if let Some(u) = external_url {
                extra += &format!("external_url = {u:?}\n");
            }
            let config = format!(
                "dir = {dir:?}\nlisten = {listen:?}\ncapacity = {capacity}\ncheck_in_s = {check_in_s}\n{extra}\n[[satellite]]\nurl = {satellite_url:?}\nkey = {satellite_key:?}\n",
                dir = dir.display().to_string()
            );
            let path = dir.join("storagenode.toml");
            std::fs::write(&path, config)?;
            println!("node {} set up in {}", id.id(), dir.display());
        }
        Command::Status { dir, json } => {
            let s = storagenode::status::status(&load(&dir)?).await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&s)?),
                false => print!("{}", storagenode::status::render(&s)),
            }
        }
        Command::Run { dir } => {
            let config = load(&dir)?;
            let node = Node::start(config).await?;
            println!("node {} serving pieces on {}", node.identity.id(), node.url);
            if let Some(a) = node.debug_addr() {
                println!("metrics on http://{a}/metrics");
            }
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
        }
    }
    Ok(())
}
