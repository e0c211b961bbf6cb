//! `satellite run <process>`: the satellite's replicable processes.

use anyhow::Context;
use clap::{Args, Subcommand};
use orbit_replica::{Mode, Replica, ReplicaConfig};
use std::path::PathBuf;

/// The processes.
#[derive(Subcommand)]
pub enum Process {
    /// The API replica: for now its store cluster manager and a status/health endpoint.
    Api(ApiArgs),
}

/// Flags of `run api`; each overrides the configuration file.
#[derive(Args)]
pub struct ApiArgs {
    /// The replica's TOML configuration (see docs/replicas.md).
    #[arg(long, env = "ORBIT_CONFIG")]
    config: PathBuf,
    /// This replica's id.
    #[arg(long, env = "ORBIT_REPLICA_ID")]
    replica_id: Option<u64>,
    /// external, fixed or incremental.
    #[arg(long, env = "ORBIT_MODE")]
    mode: Option<Mode>,
    /// Data directory.
    #[arg(long, env = "ORBIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Status endpoint address.
    #[arg(long, env = "ORBIT_STATUS_ADDR")]
    status_addr: Option<String>,
    /// Mode incremental: let this replica create the cluster although it is not the
    /// designated one (when that one is gone for good). Never on two replicas.
    #[arg(long, env = "ORBIT_BOOTSTRAP")]
    bootstrap: bool,
}

/// Runs a process until SIGINT or SIGTERM.
pub async fn run(p: Process) -> anyhow::Result<()> {
    match p {
        Process::Api(a) => api(a).await,
    }
}

async fn api(a: ApiArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let mut config: ReplicaConfig = ReplicaConfig::parse_unchecked(&text)
        .with_context(|| format!("in {}", a.config.display()))?;
    if let Some(id) = a.replica_id {
        config.replica_id = id;
    }
    if let Some(m) = a.mode {
        config.mode = m;
    }
    if let Some(d) = a.data_dir {
        config.data_dir = d;
    }
    if let Some(s) = a.status_addr {
        config.status_addr = s;
    }
    config.bootstrap |= a.bootstrap;
    config
        .validate()
        .with_context(|| format!("in {}", a.config.display()))?;
    let replica = Replica::start(config).await?;
    println!(
        "replica {} ({:?} mode{}) status on http://{}/status",
        replica.config().replica_id,
        replica.config().mode,
        if replica.store_node().is_some() {
            ", runs a store member"
        } else {
            ""
        },
        replica.status_addr()
    );
    crate::until_stopped().await?;
    replica.shutdown().await;
    Ok(())
}
