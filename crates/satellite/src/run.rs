//! `satellite run <process>`: the satellite's replicable processes.

use anyhow::Context;
use clap::{Args, Subcommand};
use orbit_identity::Identity;
use orbit_payments::{Escrow, PaymentsConfig, PaymentsService};
use orbit_replica::{Mode, Replica, ReplicaConfig};
use orbit_satellite_api::service::{Charges, SatelliteApi, StorageConfig};
use orbit_satellite_model::nodes::SelectionConfig;
use serde::Deserialize;
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
    /// Address of the public gRPC API (payments).
    #[arg(long, env = "ORBIT_API_ADDR")]
    api_addr: Option<String>,
}

/// The `[api]` section: where the replica's public gRPC API listens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    #[serde(default = "default_api_addr")]
    addr: String,
}

fn default_api_addr() -> String {
    "127.0.0.1:7778".into()
}

/// A replica's configuration file: the replica's own settings, plus the sections of
/// the services it serves (`[api]`, `[payments]`).
struct SatelliteConfig {
    replica: ReplicaConfig,
    api: ApiSection,
    payments: Option<PaymentsConfig>,
    storage: Option<StorageSection>,
}

/// The `[storage]` section: the storage network API (metainfo, nodes, orders).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    /// The satellite's identity file, relative to the data dir; created if missing.
    #[serde(default = "default_identity")]
    identity: PathBuf,
    /// Seconds since its last check-in within which a node counts as online.
    #[serde(default = "default_online_window")]
    online_window_s: u64,
    /// At most one node per /24 network per segment (turn off for one-machine networks).
    #[serde(default = "default_true")]
    distinct_networks: bool,
    /// Uploads begun this many seconds ago and never committed are deleted.
    #[serde(default = "default_abandoned_upload_s")]
    abandoned_upload_s: u64,
    /// How often expired serials and abandoned uploads are swept, seconds.
    #[serde(default = "default_sweep_interval_s")]
    sweep_interval_s: u64,
}

fn default_abandoned_upload_s() -> u64 {
    24 * 3600
}
fn default_sweep_interval_s() -> u64 {
    600
}

fn default_identity() -> PathBuf {
    PathBuf::from("satellite.key")
}
fn default_online_window() -> u64 {
    3600
}
fn default_true() -> bool {
    true
}

impl SatelliteConfig {
    fn parse(text: &str) -> anyhow::Result<SatelliteConfig> {
        let mut table: toml::Table = text.parse()?;
        let api = match table.remove("api") {
            Some(v) => v.try_into().context("[api]")?,
            None => ApiSection {
                addr: default_api_addr(),
            },
        };
        let payments = table
            .remove("payments")
            .map(|v| v.try_into::<PaymentsConfig>())
            .transpose()
            .context("[payments]")?;
        let storage = table
            .remove("storage")
            .map(|v| v.try_into::<StorageSection>())
            .transpose()
            .context("[storage]")?;
        let replica = ReplicaConfig::parse_unchecked(&toml::to_string(&table)?)?;
        Ok(SatelliteConfig {
            replica,
            api,
            payments,
            storage,
        })
    }
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
    let SatelliteConfig {
        replica: mut config,
        mut api,
        payments,
        storage,
    } = SatelliteConfig::parse(&text).with_context(|| format!("in {}", a.config.display()))?;
    if let Some(addr) = a.api_addr {
        api.addr = addr;
    }
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
    // Paid storage requests are validated on the same ledger as the payments API.
    let charges = payments.as_ref().map(|p| Charges {
        escrow: Escrow::new(replica.kv(), p.escrow),
        prices: p.prices.clone(),
        expiry_threshold_s: p.expiry_threshold_s,
    });
    let payments = payments.map(|p| {
        let escrow = Escrow::new(replica.kv(), p.escrow);
        PaymentsService::new(escrow, p).server()
    });
    let workers = orbit_worker::Group::new();
    let storage = match storage {
        Some(st) => {
            let path = replica.config().data_dir.join(&st.identity);
            let identity = Identity::load_or_create(&path)
                .with_context(|| format!("satellite identity {}", path.display()))?;
            // Records written by older satellites are rewritten once, before serving.
            let m = orbit_satellite_model::schema::migrate(&*replica.kv())
                .await
                .context("migrating the satellite's records")?;
            if m.rewritten > 0 {
                println!(
                    "migrated {} records from satellite schema {} to {}",
                    m.rewritten,
                    m.from,
                    orbit_satellite_model::schema::SCHEMA
                );
            }
            println!(
                "satellite {} (key {})",
                identity.id(),
                orbit_identity::hex_encode(&identity.public().0)
            );
            let mut sat = SatelliteApi::new(
                replica.kv(),
                identity,
                SelectionConfig {
                    online_window_s: st.online_window_s,
                    distinct_networks: st.distinct_networks,
                    ..SelectionConfig::default()
                },
                StorageConfig::default(),
            );
            sat.charges = charges;
            // Sweeps are idempotent deletes by compare: any replica may run them.
            let every = orbit_worker::Interval::every(std::time::Duration::from_secs(
                st.sweep_interval_s.max(1),
            ));
            let orders = sat.orders.clone();
            workers.spawn("expired-serials", every, move || {
                let orders = orders.clone();
                orbit_worker::job(async move {
                    let n = orders
                        .remove_expired(orbit_satellite_model::unix_now())
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::debug!(removed = n, "expired serials swept");
                    Ok(())
                })
            });
            let meta = sat.meta.clone();
            let max_age = st.abandoned_upload_s;
            workers.spawn("abandoned-uploads", every, move || {
                let meta = meta.clone();
                orbit_worker::job(async move {
                    let n = meta
                        .remove_abandoned(orbit_satellite_model::unix_now(), max_age)
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::debug!(removed = n, "abandoned uploads swept");
                    Ok(())
                })
            });
            Some((
                sat.metainfo_server()
                    .max_decoding_message_size(16 << 20)
                    .max_encoding_message_size(16 << 20),
                sat.nodes_server(),
            ))
        }
        None => None,
    };
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut api_server = None;
    if payments.is_some() || storage.is_some() {
        let listener = tokio::net::TcpListener::bind(&api.addr)
            .await
            .with_context(|| format!("API address {}", api.addr))?;
        println!("API on http://{}", listener.local_addr()?);
        let (meta, nodes) = storage.unzip();
        api_server = Some(tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_optional_service(payments)
                .add_optional_service(meta)
                .add_optional_service(nodes)
                .serve_with_incoming_shutdown(orbit_store::no_delay(listener), async {
                    let _ = api_stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "API server failed");
            }
        }));
    }
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
    // Outside in: no new requests, then the background work, then the store.
    let _ = stop_api.send(());
    if let Some(server) = api_server {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    }
    let aborted = workers.shutdown(std::time::Duration::from_secs(5)).await;
    if !aborted.is_empty() {
        tracing::warn!(?aborted, "workers did not stop in time");
    }
    replica.shutdown().await;
    Ok(())
}
