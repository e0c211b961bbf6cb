//! The key-value interface that all of orbit keeps its state behind.
//!
//! [`Kv`] has etcd v3 semantics. It has two implementations: the in-process handle of
//! an embedded store node (in `orbit-store`), and [`RemoteKv`], a client over the etcd
//! protocol that works against orbit store nodes and against a real etcd cluster.

mod error;
pub mod pb;
pub mod pin;
mod remote;
mod types;

pub use error::{KvError, KvResult};
pub use pin::{pin_revision, unpin, PIN_PREFIX};
pub use remote::RemoteKv;
pub use types::*;

use futures::stream::BoxStream;

/// A stream of watch batches; it ends when the watch is cancelled or compacted.
pub type WatchStream = BoxStream<'static, KvResult<WatchResponse>>;

/// A strongly consistent key-value store with etcd v3 semantics.
#[async_trait::async_trait]
pub trait Kv: Send + Sync {
    /// Reads one key or a range.
    async fn range(&self, req: RangeRequest) -> KvResult<RangeResponse>;
    /// Writes one key.
    async fn put(&self, req: PutRequest) -> KvResult<PutResponse>;
    /// Deletes one key or a range.
    async fn delete(&self, req: DeleteRequest) -> KvResult<DeleteResponse>;
    /// Runs a transaction atomically.
    async fn txn(&self, req: TxnRequest) -> KvResult<TxnResponse>;
    /// Drops history older than `revision`.
    async fn compact(&self, revision: i64) -> KvResult<()>;
    /// Grants a lease of `ttl` seconds; `id` 0 lets the store choose.
    async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse>;
    /// Revokes a lease and deletes its keys.
    async fn lease_revoke(&self, id: i64) -> KvResult<()>;
    /// Renews a lease once; returns its TTL.
    async fn lease_keep_alive(&self, id: i64) -> KvResult<i64>;
    /// Tells how long a lease has left.
    async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<LeaseTimeToLiveResponse>;
    /// Lists the live leases.
    async fn leases(&self) -> KvResult<Vec<i64>>;
    /// Watches a key or range.
    async fn watch(&self, key: Vec<u8>, opts: WatchOptions) -> KvResult<WatchStream>;
    /// Lists the members of the store cluster.
    async fn members(&self) -> KvResult<Vec<Member>>;

    /// Reads one key; a convenience over [`Kv::range`].
    async fn get(&self, key: &[u8]) -> KvResult<Option<KeyValue>> {
        Ok(self
            .range(RangeRequest::key(key))
            .await?
            .kvs
            .into_iter()
            .next())
    }
}
