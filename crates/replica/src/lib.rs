//! Satellite replicas and their store cluster (DESIGN layer 2, seed 000).
//!
//! A replica gets its [`Kv`] one of three ways ([`config::Mode`]): `external` uses
//! given client URLs (orbit members started by hand, or a real etcd); `fixed` runs an
//! embedded store member on the replicas the table marks and uses the cluster from the
//! others; `incremental` (the seed's growing cluster) is not available yet and is
//! refused at start with a message saying so.

pub mod config;
mod status;
pub mod table;

pub use config::{ConfigError, Mode, ReplicaConfig};

use orbit_kv::{Kv, RemoteKv};
use orbit_store::{EmbeddedKv, StoreConfig, StoreNode};
use std::net::SocketAddr;
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
async fn following(urls: &[String]) -> Result<RemoteKv, ReplicaError> {
    let kv = RemoteKv::connect(urls).await?;
    kv.follow_members(FOLLOW_MEMBERS);
    Ok(kv)
}

/// A running replica: its store access and, if it runs one, its store member.
pub struct Replica {
    config: ReplicaConfig,
    kv: Arc<dyn Kv>,
    node: Option<Arc<StoreNode>>,
    status_addr: SocketAddr,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// Starts the replica as configured, with its status endpoint.
    pub async fn start(config: ReplicaConfig) -> Result<Arc<Replica>, ReplicaError> {
        config.validate()?;
        let (kv, node): (Arc<dyn Kv>, Option<Arc<StoreNode>>) = match config.mode {
            Mode::External => {
                let urls: Vec<String> = config
                    .replicas
                    .iter()
                    .map(|r| r.client_url.clone())
                    .collect();
                (Arc::new(following(&urls).await?), None)
            }
            Mode::Fixed if config.me().store_node => {
                let me = config.me();
                let node = StoreNode::start(StoreConfig {
                    initial_cluster: config
                        .store_rows()
                        .map(|r| (r.store_name.clone(), r.peer_url.clone()))
                        .collect(),
                    token: config.token.clone(),
                    heartbeat_ms: config.heartbeat_ms,
                    election_ms: config.election_ms,
                    ..StoreConfig::single(
                        &me.store_name,
                        config.data_dir.join("store"),
                        &me.client_url,
                        &me.peer_url,
                    )
                })
                .await?;
                (Arc::new(EmbeddedKv::new(node.clone())), Some(node))
            }
            Mode::Fixed => {
                let urls: Vec<String> = config.store_rows().map(|r| r.client_url.clone()).collect();
                (Arc::new(following(&urls).await?), None)
            }
            Mode::Incremental => {
                return Err(ConfigError(
                    "mode incremental is not available yet; use fixed or external".into(),
                )
                .into())
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
        let heartbeat = table::spawn_heartbeat(
            kv.clone(),
            config.token.clone(),
            config.replica_id,
            node.is_some(),
            std::time::Duration::from_millis(config.replica_heartbeat_ms),
            config.replica_ttl_s,
        );
        let replica = Arc::new(Replica {
            config,
            kv,
            node,
            status_addr,
            heartbeat,
        });
        status::serve(replica.clone(), listener);
        tracing::info!(
            replica = replica.config.replica_id,
            mode = ?replica.config.mode,
            store_member = replica.node.is_some(),
            status = %status_addr,
            "replica started"
        );
        Ok(replica)
    }

    /// The store, as the rest of the satellite uses it.
    pub fn kv(&self) -> Arc<dyn Kv> {
        self.kv.clone()
    }

    /// The embedded store member, if this replica runs one.
    pub fn store_node(&self) -> Option<&Arc<StoreNode>> {
        self.node.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Where the status endpoint listens.
    pub fn status_addr(&self) -> SocketAddr {
        self.status_addr
    }

    /// Stops heartbeating and the embedded store member, if any.
    pub async fn shutdown(&self) {
        self.heartbeat.abort();
        if let Some(n) = &self.node {
            n.shutdown().await;
        }
    }
}
