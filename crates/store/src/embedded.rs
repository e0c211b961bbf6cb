//! [`Kv`] on an in-process store member: no network hop for the caller.

use crate::auth::Need;
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
    caller: Caller,
}

/// On whose behalf a handle acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// orbit's own code in the member's process: trusted, never checked (as etcd's
    /// internal requests run as root).
    Member,
    /// A client of the etcd API, as the user its token or certificate names (`None`:
    /// it presented neither); checked against its permissions while auth is enabled.
    Client(Option<String>),
}

impl EmbeddedKv {
    /// A handle on `node` for orbit's own code.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self {
            node,
            caller: Caller::Member,
        }
    }

    /// A handle on `node` acting for a client of the etcd API.
    pub fn for_client(node: Arc<StoreNode>, user: Option<String>) -> Self {
        Self {
            node,
            caller: Caller::Client(user),
        }
    }

    /// Checks `f` against the member's current auth state, for a client caller.
    fn allowed(
        &self,
        f: impl FnOnce(
            &crate::auth::AuthState,
            &crate::mvcc::Mvcc,
            Option<&str>,
        ) -> Result<(), AuthError>,
    ) -> KvResult<()> {
        match &self.caller {
            Caller::Member => Ok(()),
            Caller::Client(user) => {
                let s = self.node.shared().read();
                Ok(f(&s.auth, &s.kv, user.as_deref())?)
            }
        }
    }

    /// `read` of the member's state, if `check` allows it to a client caller; both
    /// under one lock, so no auth change lands between them.
    fn read_checked<T>(
        &self,
        check: impl FnOnce(
            &crate::auth::AuthState,
            &crate::mvcc::Mvcc,
            Option<&str>,
        ) -> Result<(), AuthError>,
        read: impl FnOnce(&crate::mvcc::Mvcc) -> KvResult<T>,
    ) -> KvResult<T> {
        let s = self.node.shared().read();
        if let Caller::Client(user) = &self.caller {
            check(&s.auth, &s.kv, user.as_deref())?;
        }
        read(&s.kv)
    }

    /// A write as this handle's caller makes it.
    pub(crate) async fn write(&self, cmd: WriteCommand) -> KvResult<WriteResult> {
        match &self.caller {
            Caller::Member => self.node.write(cmd).await,
            Caller::Client(user) => self.node.write_as(user.clone(), cmd).await,
        }
    }

    /// Allows the caller's request only if auth is off or it names a user (etcd's
    /// check for requests with no permission of their own, such as Status).
    pub fn require_user(&self) -> KvResult<()> {
        self.allowed(|a, _, user| match user {
            None if a.enabled => Err(AuthError::UserEmpty),
            _ => Ok(()),
        })
    }

    /// Allows the caller's request only if it is an admin's (or auth is off).
    pub fn require_admin(&self) -> KvResult<()> {
        self.allowed(|a, _, user| a.check_admin(user))
    }

    /// Allows the caller to read `[key, range_end)` (a watch, a lock's key).
    pub fn require_read(&self, key: &[u8], range_end: &[u8]) -> KvResult<()> {
        self.allowed(|a, _, user| a.check(user, Need::Read, key, range_end))
    }

    /// Allows the caller `need` on every key of lease `id` (and names a user).
    fn require_lease(&self, id: i64, need: Need) -> KvResult<()> {
        self.require_user()?;
        self.allowed(|a, kv, user| a.check_lease(user, kv, id, need))
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
        self.read_checked(
            |a, _, user| a.check(user, Need::Read, &req.key, &req.range_end),
            |kv| kv.range(&req),
        )
    }

    async fn put(&self, req: PutRequest) -> KvResult<PutResponse> {
        match self.write(WriteCommand::Put(req)).await? {
            WriteResult::Put(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> KvResult<DeleteResponse> {
        match self.write(WriteCommand::Delete(req)).await? {
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
            return self.read_checked(
                |a, kv, user| a.check_txn(user, kv, &req),
                |kv| kv.read_txn(&req),
            );
        }
        match self.write(WriteCommand::Txn(req)).await? {
            WriteResult::Txn(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, revision: i64) -> KvResult<()> {
        self.write(WriteCommand::Compact(revision)).await?;
        Ok(())
    }

    async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse> {
        self.node.lease_grant(ttl, id).await
    }

    async fn lease_revoke(&self, id: i64) -> KvResult<()> {
        self.write(WriteCommand::LeaseRevoke { id }).await?;
        Ok(())
    }

    async fn lease_keep_alive(&self, id: i64) -> KvResult<i64> {
        self.require_lease(id, Need::Write)?;
        self.node.lease_keep_alive(id).await
    }

    async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<LeaseTimeToLiveResponse> {
        self.require_lease(id, Need::Read)?;
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
        // etcd lists leases to a user only if it may read every key they hold.
        self.require_user()?;
        self.allowed(|a, kv, user| {
            kv.leases()
                .keys()
                .try_for_each(|id| a.check_lease(user, kv, *id, Need::Read))
        })?;
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
        self.require_read(&key, &opts.range_end)?;
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
        match action {
            AlarmAction::Get => self.require_user()?,
            _ => self.require_admin()?,
        }
        self.node.alarm(action, member_id, alarm).await
    }
}
