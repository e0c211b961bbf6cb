//! Satellite replicas and their store cluster (DESIGN layer 2, seed 000).
//!
//! A replica gets its [`Kv`] one of three ways ([`config::Mode`]): `external` uses
//! given client URLs (orbit members started by hand, or a real etcd); `fixed` runs an
//! embedded store member on the replicas the table marks and uses the cluster from the
//! others; `incremental` grows and shrinks the cluster with the live replicas
//! ([`incremental`]).

pub mod config;
mod incremental;
mod status;
pub mod table;

pub use config::{ConfigError, Mode, ReplicaConfig};

use orbit_kv::{Kv, RemoteKv};
use orbit_store::{EmbeddedKv, StoreConfig, StoreNode};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded store member failed to start.
    #[error("store member: {0}")]
    Store(#[from] orbit_store::StoreError),
    /// The store cluster could not be reached.
    #[error("store cluster: {0}")]
    Kv(#[from] orbit_kv::KvError),
    /// The data dir could not be written.
    #[error("data dir: {0}")]
    DataDir(#[from] std::io::Error),
    /// The status endpoint could not listen.
    #[error("status endpoint on {addr}: {err}")]
    Status {
        /// The address.
        addr: String,
        /// What failed.
        err: std::io::Error,
    },
}

/// How often a replica's store client re-reads the member list.
const FOLLOW_MEMBERS: std::time::Duration = std::time::Duration::from_secs(2);

/// A client of the store cluster that keeps its endpoints in step with the members.
async fn following(urls: &[String], config: &ReplicaConfig) -> Result<RemoteKv, ReplicaError> {
    let tls = config
        .store_tls
        .client()
        .client_config()
        .map_err(|e| ConfigError(format!("store_tls: {e}")))?;
    let kv = RemoteKv::connect_as(urls, tls, config.store_credentials()?).await?;
    // A store with auth enabled that does not let this replica at orbit's keys would
    // only fail later, heartbeat by heartbeat: say so now. Other errors (a store still
    // electing, say) are for the caller's retries.
    let probe = kv.range(orbit_kv::RangeRequest::key(table::HEALTH_KEY));
    if let Err(orbit_kv::KvError::Auth(e)) = probe.await {
        let fix = match &config.store_user {
            Some(u) => format!("grant store user {u} a role with readwrite on the prefix /orbit/"),
            None => "set store_user (and ORBIT_STORE_PASSWORD) to a store user with readwrite on the prefix /orbit/".into(),
        };
        let why = format!("the store refuses this replica's reads of orbit's keys ({e}): {fix}");
        return Err(ConfigError(why).into());
    }
    kv.follow_members(FOLLOW_MEMBERS);
    Ok(kv)
}

/// The replica's store member, if it runs one now (mode incremental starts and stops
/// it while the replica runs).
#[derive(Clone, Default)]
pub(crate) struct NodeSlot(Arc<std::sync::Mutex<Option<Arc<StoreNode>>>>);

impl NodeSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<StoreNode>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member, if running.
    pub(crate) fn get(&self) -> Option<Arc<StoreNode>> {
        self.lock().clone()
    }

    /// Replaces the member, returning the previous one.
    pub(crate) fn set(&self, node: Option<Arc<StoreNode>>) -> Option<Arc<StoreNode>> {
        std::mem::replace(&mut *self.lock(), node)
    }
}

/// The store member configuration of a replica: its row's name and URLs, the cluster's
/// token and timings, data in `DATA_DIR/store`.
pub(crate) fn store_config(config: &ReplicaConfig) -> StoreConfig {
    let me = config
        .me()
        .expect("only a replica with a row runs a store member");
    StoreConfig {
        token: config.token.clone(),
        heartbeat_ms: config.heartbeat_ms,
        election_ms: config.election_ms,
        auto_compaction: config
            .auto_compaction()
            .unwrap_or(orbit_store::compactor::DEFAULT_AUTO_COMPACTION),
        tls: config.store_tls.clone(),
        ..StoreConfig::single(
            &me.store_name,
            config.data_dir.join("store"),
            &me.client_url,
            &me.peer_url,
        )
    }
}

/// A running replica: its store access and, if it runs one, its store member.
pub struct Replica {
    config: ReplicaConfig,
    kv: Arc<dyn Kv>,
    node: NodeSlot,
    status_addr: SocketAddr,
    /// Background work: the replica's own (heartbeat, cluster manager) and that of the
    /// services the process adds; stopped last started first.
    workers: orbit_worker::Group,
    /// The status endpoint's server, stopped first at shutdown.
    status_server: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Sections the process's services add to `/status`, by name.
    status_sections: std::sync::Mutex<Vec<(String, StatusSection)>>,
}

/// A service's part of `/status`: called on every request.
pub type StatusSection = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl Replica {
    /// Starts the replica as configured, with its status endpoint.
    pub async fn start(config: ReplicaConfig) -> Result<Arc<Replica>, ReplicaError> {
        config.validate()?;
        let all_client_urls: Vec<String> = config
            .replicas
            .iter()
            .map(|r| r.client_url.clone())
            .collect();
        let node = NodeSlot::default();
        let kv: Arc<dyn Kv> = match config.mode {
            Mode::External => Arc::new(following(&all_client_urls, &config).await?),
            Mode::Fixed if config.may_run_member() && config.me().is_some_and(|m| m.store_node) => {
                let started = StoreNode::start(StoreConfig {
                    initial_cluster: config
                        .store_rows()
                        .map(|r| (r.store_name.clone(), r.peer_url.clone()))
                        .collect(),
                    ..store_config(&config)
                })
                .await?;
                node.set(Some(started.clone()));
                Arc::new(EmbeddedKv::new(started))
            }
            Mode::Fixed => {
                let urls: Vec<String> = config.store_rows().map(|r| r.client_url.clone()).collect();
                Arc::new(following(&urls, &config).await?)
            }
            Mode::Incremental if !config.may_run_member() => {
                Arc::new(following(&all_client_urls, &config).await?)
            }
            Mode::Incremental => {
                // The member comes and goes; the client follows the member list.
                node.set(incremental::start(&config).await?);
                Arc::new(following(&all_client_urls, &config).await?)
            }
        };
        let listener = tokio::net::TcpListener::bind(&config.status_addr)
            .await
            .map_err(|err| ReplicaError::Status {
                addr: config.status_addr.clone(),
                err,
            })?;
        let status_addr = listener.local_addr().map_err(|err| ReplicaError::Status {
            addr: config.status_addr.clone(),
            err,
        })?;
        // Mode incremental reports a member only once it votes.
        let runs_node = Arc::new(AtomicBool::new(
            config.mode == Mode::Fixed && node.get().is_some(),
        ));
        let workers = orbit_worker::Group::new();
        table::heartbeat_worker(
            &workers,
            kv.clone(),
            config.token.clone(),
            config.replica_id,
            runs_node.clone(),
            std::time::Duration::from_millis(config.replica_heartbeat_ms),
            config.replica_ttl_s,
        );
        if config.mode == Mode::Incremental && config.may_run_member() {
            incremental::Manager::new(config.clone(), kv.clone(), node.clone(), runs_node)
                .spawn(&workers);
        }
        let replica = Arc::new(Replica {
            config,
            kv,
            node,
            status_addr,
            workers,
            status_server: std::sync::Mutex::new(None),
            status_sections: std::sync::Mutex::new(Vec::new()),
        });
        let server = status::serve(replica.clone(), listener);
        *replica
            .status_server
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(server);
        tracing::info!(
            replica = replica.config.replica_id,
            mode = ?replica.config.mode,
            store_member = replica.node.get().is_some(),
            status = %status_addr,
            "replica started"
        );
        Ok(replica)
    }

    /// The store, as the rest of the satellite uses it.
    pub fn kv(&self) -> Arc<dyn Kv> {
        self.kv.clone()
    }

    /// The embedded store member, if this replica runs one now.
    pub fn store_node(&self) -> Option<Arc<StoreNode>> {
        self.node.get()
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The process's workers: services add theirs here, so the status endpoint shows
    /// them and shutdown stops them (before the replica's own, which started first).
    pub fn workers(&self) -> &orbit_worker::Group {
        &self.workers
    }

    /// Adds `section` to `/status` under `name` (a service's own state, such as the
    /// segment loop's last pass).
    pub fn add_status(&self, name: &str, section: StatusSection) {
        self.status_sections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), section));
    }

    /// The sections services added to `/status`.
    pub(crate) fn status_sections(&self) -> Vec<(String, StatusSection)> {
        self.status_sections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the status endpoint listens.
    pub fn status_addr(&self) -> SocketAddr {
        self.status_addr
    }

    /// Stops the status endpoint, every worker (the services' first, then heartbeating
    /// and managing the cluster), and the embedded store member, if any.
    pub async fn shutdown(&self) {
        let server = self
            .status_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = server {
            s.abort();
        }
        let aborted = self
            .workers
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        if !aborted.is_empty() {
            tracing::warn!(?aborted, "workers did not stop in time");
        }
        if let Some(n) = self.node.set(None) {
            n.shutdown().await;
        }
    }
}
