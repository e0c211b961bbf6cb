//! The key-value interface that all of orbit keeps its state behind.
//!
//! [`Kv`] has etcd v3 semantics. It has two implementations: the in-process handle of
//! an embedded store node (in `orbit-store`), and [`RemoteKv`], a client over the etcd
//! protocol that works against orbit store nodes and against a real etcd cluster.

pub mod election;
mod error;
pub mod pb;
pub mod pin;
pub mod record;
mod remote;
mod types;

pub use error::{AuthError, KvError, KvResult};
pub use pin::{pin_revision, unpin, PIN_PREFIX};
pub use remote::{Credentials, RemoteKv};
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
    /// Lists, raises or clears alarms (etcd's Maintenance.Alarm): the alarms the
    /// request matched, raised or cleared.
    async fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> KvResult<Vec<AlarmMember>>;

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

/// Pages through a range at one revision: every page reads at the revision the first
/// one was served at, so a long scan sees one consistent state (while that revision is
/// not compacted: pin it for long scans, see [`pin`]).
pub struct Scan<'a> {
    kv: &'a dyn Kv,
    next: Vec<u8>,
    end: Vec<u8>,
    page: i64,
    revision: i64,
    done: bool,
}

impl<'a> Scan<'a> {
    /// Keys in `[key, range_end)` in pages of `page` keys, at the current revision.
    pub fn new(kv: &'a dyn Kv, key: Vec<u8>, range_end: Vec<u8>, page: i64) -> Scan<'a> {
        Scan {
            kv,
            next: key,
            end: range_end,
            page: page.max(1),
            revision: 0,
            done: false,
        }
    }

    /// Keys under `prefix`.
    pub fn prefix(kv: &'a dyn Kv, prefix: &str, page: i64) -> Scan<'a> {
        let key = prefix.as_bytes().to_vec();
        let end = prefix_end(&key);
        Scan::new(kv, key, end, page)
    }

    /// Reads at `revision` rather than the current one.
    pub fn at(mut self, revision: i64) -> Scan<'a> {
        self.revision = revision;
        self
    }

    /// The revision pages are read at (0 until the first page).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Where the next page starts (a cursor to resume from after an error).
    pub fn cursor(&self) -> &[u8] {
        &self.next
    }

    /// The next page, or `None` at the end.
    pub async fn next_page(&mut self) -> KvResult<Option<Vec<KeyValue>>> {
        if self.done {
            return Ok(None);
        }
        let r = self
            .kv
            .range(RangeRequest {
                key: self.next.clone(),
                range_end: self.end.clone(),
                limit: self.page,
                revision: self.revision,
                ..Default::default()
            })
            .await?;
        if self.revision == 0 {
            self.revision = r.revision;
        }
        match r.kvs.last() {
            Some(last) if r.more => {
                self.next = last.key.clone();
                self.next.push(0);
            }
            _ => self.done = true,
        }
        Ok((!r.kvs.is_empty()).then_some(r.kvs))
    }

    /// Every remaining key.
    pub async fn collect(mut self) -> KvResult<Vec<KeyValue>> {
        let mut out = Vec::new();
        while let Some(page) = self.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }
}
