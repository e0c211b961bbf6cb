//! orbit's consistent store: an etcd-v3-compatible, Raft-replicated, multi-version
//! key-value store that runs inside any orbit process or standalone.
//!
//! Layers, bottom up: [`log_store`] (the durable Raft log), [`mvcc`] (the replicated
//! key-value state), [`state_machine`] (applying the log, snapshots), [`network`]
//! (member-to-member RPCs), [`node`] (one member: Raft, leader forwarding, read index,
//! leases, membership), [`server`] (the etcd gRPC API) and [`embedded`] (the
//! in-process [`orbit_kv::Kv`] handle).

pub mod auth;
mod auth_api;
pub mod backup;
pub mod compactor;
pub mod config;
pub mod embedded;
mod gateway;
pub mod lease;
pub mod log_store;
mod metrics;
pub mod mvcc;
pub mod network;
pub mod node;
pub mod proposer;
pub mod raft_types;
pub mod read_index;
pub mod recipes;
pub mod recovery;
pub mod server;
pub mod state_machine;
pub mod watch;

pub use compactor::AutoCompaction;
pub use config::{parse_initial_cluster, ClusterState, StoreConfig};
pub use embedded::EmbeddedKv;
pub use node::{find_cluster, StoreNode};
pub use server::no_delay;

/// Why a store member could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration or the data dir is wrong; the message says how.
    #[error("{0}")]
    Config(String),
    /// A disk operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Raft failed.
    #[error("raft: {0}")]
    Raft(String),
}
