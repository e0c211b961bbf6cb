//! [`Kv`] on an in-process store member: no network hop for the caller.

use crate::mvcc::{WriteCommand, WriteResult};
use crate::node::StoreNode;
use crate::watch;
use futures::StreamExt;
use orbit_kv::*;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

/// The in-process handle of an embedded store member.
#[derive(Clone)]
pub struct EmbeddedKv {
    node: Arc<StoreNode>,
}

impl EmbeddedKv {
    /// A handle on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }

    /// The member behind the handle.
    pub fn node(&self) -> &Arc<StoreNode> {
        &self.node
    }
}

fn unexpected(r: WriteResult) -> KvError {
    KvError::Unavailable(format!("unexpected write result {r:?}"))
}

impl EmbeddedKv {
    /// Starts a watcher on the member's applied state; shared with the gRPC Watch.
    pub fn start_watch(
        node: &StoreNode,
        key: Vec<u8>,
        mut opts: WatchOptions,
        filters: watch::Filters,
    ) -> (tokio::sync::mpsc::Receiver<WatchResponse>, i64) {
        let current = node.shared().read().kv.revision();
        if opts.start_revision <= 0 {
            // "From now": pinned here so nothing between this call and the
            // watcher's subscription is missed.
            opts.start_revision = current + 1;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let progress = std::time::Duration::from_millis(node.config().watch_progress_ms.max(1));
        tokio::spawn(watch::run(
            node.shared().clone(),
            key,
            opts,
            filters,
            progress,
            tx,
        ));
        (rx, current)
    }
}

#[async_trait::async_trait]
impl Kv for EmbeddedKv {
    async fn range(&self, req: RangeRequest) -> KvResult<RangeResponse> {
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        self.node.shared().read().kv.range(&req)
    }

    async fn put(&self, req: PutRequest) -> KvResult<PutResponse> {
        match self.node.write(WriteCommand::Put(req)).await? {
            WriteResult::Put(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> KvResult<DeleteResponse> {
        match self.node.write(WriteCommand::Delete(req)).await? {
            WriteResult::Delete(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: TxnRequest) -> KvResult<TxnResponse> {
        let ops = [&req.success, &req.failure]
            .iter()
            .map(|b| b.len())
            .max()
            .unwrap_or(0)
            .max(req.compare.len());
        if ops > crate::mvcc::MAX_TXN_OPS {
            return Err(KvError::TooManyOps);
        }
        let read_only = req
            .success
            .iter()
            .chain(req.failure.iter())
            .all(|op| matches!(op, TxnOp::Range(_)));
        if read_only {
            // A read-only txn needs no log entry: evaluate it after a read barrier.
            self.node.read_barrier().await?;
            return self.node.shared().read().kv.read_txn(&req);
        }
        match self.node.write(WriteCommand::Txn(req)).await? {
            WriteResult::Txn(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, revision: i64) -> KvResult<()> {
        self.node.write(WriteCommand::Compact(revision)).await?;
        Ok(())
    }

    async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse> {
        self.node.lease_grant(ttl, id).await
    }

    async fn lease_revoke(&self, id: i64) -> KvResult<()> {
        self.node.write(WriteCommand::LeaseRevoke { id }).await?;
        Ok(())
    }

    async fn lease_keep_alive(&self, id: i64) -> KvResult<i64> {
        self.node.lease_keep_alive(id).await
    }

    async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<LeaseTimeToLiveResponse> {
        let (ttl, granted_ttl) = match self.node.lease_time_to_live(id).await {
            Ok(t) => t,
            // As etcd: an unknown or expired lease has TTL -1.
            Err(KvError::LeaseNotFound) => (-1, 0),
            Err(e) => return Err(e),
        };
        let state = self.node.shared().read();
        Ok(LeaseTimeToLiveResponse {
            revision: state.kv.revision(),
            id,
            ttl,
            granted_ttl,
            keys: if keys && ttl >= 0 {
                state.kv.lease_keys(id).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
    }

    async fn leases(&self) -> KvResult<Vec<i64>> {
        self.node.read_barrier().await?;
        Ok(self
            .node
            .shared()
            .read()
            .kv
            .leases()
            .keys()
            .copied()
            .collect())
    }

    async fn watch(&self, key: Vec<u8>, opts: WatchOptions) -> KvResult<WatchStream> {
        let (rx, _) = Self::start_watch(&self.node, key, opts, watch::Filters::default());
        Ok(ReceiverStream::new(rx).map(Ok).boxed())
    }

    async fn members(&self) -> KvResult<Vec<Member>> {
        Ok(self.node.members())
    }

    async fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> KvResult<Vec<AlarmMember>> {
        self.node.alarm(action, member_id, alarm).await
    }
}
