//! etcd's lock and election recipes, run by the server for the Lock and Election
//! services (`v3lockpb`, `v3electionpb`), over any [`Kv`] with etcd's semantics.
//!
//! Both rest on one idea. A contender owns the key `<name>/<lease in hex>`, created
//! under its lease. It holds the lock, or leads the election, once no key of `<name>/`
//! created before its own is left. It waits for that by watching the newest such key
//! until it is deleted, then looking again. A contender whose lease ends loses its key,
//! so a crashed holder releases the lock when its lease expires. The keys are ordinary
//! keys: etcd's client-side recipes (what `etcdctl lock` and `elect` use) contend
//! with the server's on the same keys.

use futures::StreamExt;
use orbit_kv::{
    DeleteRequest, EventKind, KeyValue, Kv, KvError, PutRequest, RangeRequest, SortOrder,
    SortTarget, TxnOp, TxnOpResponse, TxnRequest, WatchOptions,
};

/// Why a recipe failed: the store, or etcd's own election and lock errors.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The store refused or failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Proclaim by someone who does not lead (etcd's ErrElectionNotLeader).
    #[error("election: not leader")]
    NotLeader,
    /// Leader of an election nobody leads (ErrElectionNoLeader).
    #[error("election: no leader")]
    NoLeader,
    /// The contender's key went while it waited: its lease ended (ErrSessionExpired).
    #[error("election: session expired")]
    SessionExpired,
    /// An empty name.
    #[error("etcdserver: {0} is not provided")]
    Missing(&'static str),
}

impl RecipeError {
    /// The gRPC status etcd clients get.
    pub fn status(&self) -> tonic::Status {
        match self {
            RecipeError::Kv(e) => orbit_kv::pb::error_to_status(e),
            RecipeError::NotLeader | RecipeError::SessionExpired => {
                tonic::Status::failed_precondition(self.to_string())
            }
            RecipeError::NoLeader => tonic::Status::not_found(self.to_string()),
            RecipeError::Missing(_) => tonic::Status::invalid_argument(self.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, RecipeError>;

/// The key a contender with `lease` owns in `name`: `<name>/<lease hex>`, as etcd.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// A contender's key once it holds or leads: the key, its create revision, and the
/// store revision it was granted at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `<name>/<lease hex>`.
    pub key: Vec<u8>,
    /// Its create revision: which contender it is.
    pub create_revision: i64,
    /// The store's revision when the hold was granted.
    pub revision: i64,
}

/// Creates `key` under `lease` with `value` unless it exists; its create revision,
/// and its value if it existed.
async fn own(kv: &dyn Kv, key: &[u8], lease: i64, value: &[u8]) -> Result<(i64, Option<KeyValue>)> {
    let mut put = PutRequest::new(key.to_vec(), value.to_vec());
    put.lease = lease;
    let r = kv
        .txn(TxnRequest::if_created(
            key.to_vec(),
            0,
            vec![TxnOp::Put(put)],
            vec![TxnOp::Range(RangeRequest::key(key.to_vec()))],
        ))
        .await?;
    if r.succeeded {
        return Ok((r.revision, None));
    }
    match r.responses.into_iter().next() {
        Some(TxnOpResponse::Range(got)) => match got.kvs.into_iter().next() {
            Some(kv) => Ok((kv.create_revision, Some(kv))),
            // Deleted between the compare and the read cannot happen in one txn.
            None => Err(RecipeError::SessionExpired),
        },
        _ => Err(KvError::Unavailable("unexpected txn answer".into()).into()),
    }
}

/// Waits until no key of `name/` created at or before `max_create` is left; the store
/// revision it found so.
async fn wait_deletes(kv: &dyn Kv, name: &[u8], max_create: i64) -> Result<i64> {
    loop {
        let r = kv.range(RangeRequest::prefix(prefix(name))).await?;
        let Some(last) = r
            .kvs
            .iter()
            .filter(|k| k.create_revision <= max_create)
            .max_by_key(|k| k.create_revision)
        else {
            return Ok(r.revision);
        };
        wait_deleted(kv, &last.key, r.revision + 1).await?;
    }
}

/// Waits for a delete of `key` at or after revision `from`.
async fn wait_deleted(kv: &dyn Kv, key: &[u8], from: i64) -> Result<()> {
    let mut w = kv
        .watch(
            key.to_vec(),
            WatchOptions {
                start_revision: from,
                ..Default::default()
            },
        )
        .await?;
    while let Some(batch) = w.next().await {
        let batch = batch?;
        if batch.events.iter().any(|e| e.kind == EventKind::Delete) {
            return Ok(());
        }
    }
    Err(KvError::Unavailable("the watch ended".into()).into())
}

/// Deletes the contender's key unless `disarm`ed: a Lock or Campaign call given up
/// (its client gone) while waiting must not leave its key in line, as etcd's.
struct Withdraw<'a> {
    kv: Option<std::sync::Arc<dyn Kv>>,
    key: &'a [u8],
}

impl Withdraw<'_> {
    fn disarm(mut self) {
        self.kv = None;
    }
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Some(kv) = self.kv.take() {
            let key = self.key.to_vec();
            tokio::spawn(async move {
                let _ = kv.delete(DeleteRequest::key(key)).await;
            });
        }
    }
}

/// Waits until the contender with `lease` holds lock `name` (etcd's Lock).
pub async fn lock(kv: std::sync::Arc<dyn Kv>, name: &[u8], lease: i64) -> Result<Held> {
    if name.is_empty() {
        return Err(RecipeError::Missing("lock name"));
    }
    let key = contender_key(name, lease);
    let (create_revision, _) = own(&*kv, &key, lease, b"").await?;
    wait_turn(kv, name, key, create_revision).await
}

/// Waits until `key` (created at `create_revision`) is the oldest contender of `name`
/// and still there; withdraws it if the wait is given up.
async fn wait_turn(
    kv: std::sync::Arc<dyn Kv>,
    name: &[u8],
    key: Vec<u8>,
    create_revision: i64,
) -> Result<Held> {
    let guard = Withdraw {
        kv: Some(kv.clone()),
        key: &key,
    };
    let revision = wait_deletes(&*kv, name, create_revision - 1).await?;
    still_there(&*kv, &key, create_revision).await?;
    guard.disarm();
    Ok(Held {
        key,
        create_revision,
        revision,
    })
}

/// The contender's key is still its own (its lease did not end while it waited).
async fn still_there(kv: &dyn Kv, key: &[u8], create_revision: i64) -> Result<()> {
    let now = kv.range(RangeRequest::key(key.to_vec())).await?;
    match now.kvs.first() {
        Some(k) if k.create_revision == create_revision => Ok(()),
        _ => Err(RecipeError::SessionExpired),
    }
}

/// Releases a hold (etcd's Unlock: deletes the key); the store revision after.
pub async fn unlock(kv: &dyn Kv, key: &[u8]) -> Result<i64> {
    Ok(kv.delete(DeleteRequest::key(key.to_vec())).await?.revision)
}

/// Waits until the contender with `lease` leads election `name` with `value` (etcd's
/// Campaign). A contender already in line (its key exists) keeps its place and
/// proclaims `value`.
pub async fn campaign(
    kv: std::sync::Arc<dyn Kv>,
    name: &[u8],
    lease: i64,
    value: &[u8],
) -> Result<Held> {
    if name.is_empty() {
        return Err(RecipeError::Missing("election name"));
    }
    let key = contender_key(name, lease);
    let (create_revision, existing) = own(&*kv, &key, lease, value).await?;
    if existing.is_some_and(|k| k.value != value) {
        proclaim(&*kv, &key, create_revision, value).await?;
    }
    wait_turn(kv, name, key, create_revision).await
}

/// The leader `key` (created at `create_revision`) sets `value`; refused unless it
/// still leads with that key.
pub async fn proclaim(kv: &dyn Kv, key: &[u8], create_revision: i64, value: &[u8]) -> Result<i64> {
    let mut put = PutRequest::new(key.to_vec(), value.to_vec());
    put.ignore_lease = true;
    let r = kv
        .txn(TxnRequest::if_created(
            key.to_vec(),
            create_revision,
            vec![TxnOp::Put(put)],
            Vec::new(),
        ))
        .await?;
    if !r.succeeded {
        return Err(RecipeError::NotLeader);
    }
    Ok(r.revision)
}

/// The leader gives up (its key goes if it is still that leader's); the revision after.
pub async fn resign(kv: &dyn Kv, key: &[u8], create_revision: i64) -> Result<i64> {
    let r = kv
        .txn(TxnRequest::if_created(
            key.to_vec(),
            create_revision,
            vec![TxnOp::Delete(DeleteRequest::key(key.to_vec()))],
            Vec::new(),
        ))
        .await?;
    Ok(r.revision)
}

/// The current leader of `name` (the oldest contender) and the store revision.
pub async fn leader(kv: &dyn Kv, name: &[u8]) -> Result<(KeyValue, i64)> {
    let mut req = RangeRequest::prefix(prefix(name));
    req.sort_order = SortOrder::Ascend;
    req.sort_target = SortTarget::Create;
    req.limit = 1;
    let r = kv.range(req).await?;
    match r.kvs.into_iter().next() {
        Some(k) => Ok((k, r.revision)),
        None => Err(RecipeError::NoLeader),
    }
}

/// Sends every leader of `name` and every value it proclaims, each once, in order
/// (etcd's Observe), as `(key-value, revision)`, until `to` is closed or the store
/// fails (the error is sent last).
pub async fn observe(
    kv: std::sync::Arc<dyn Kv>,
    name: Vec<u8>,
    to: tokio::sync::mpsc::Sender<Result<(KeyValue, i64)>>,
) {
    if let Err(e) = observe_into(&*kv, &name, &to).await {
        let _ = to.send(Err(e)).await;
    }
}

async fn observe_into(
    kv: &dyn Kv,
    name: &[u8],
    to: &tokio::sync::mpsc::Sender<Result<(KeyValue, i64)>>,
) -> Result<()> {
    loop {
        // The leader now, or the first contender to come.
        let (mut current, rev) = match leader(kv, name).await {
            Ok(l) => l,
            Err(RecipeError::NoLeader) => {
                let now = kv.range(RangeRequest::key(name.to_vec())).await?;
                first_put(kv, name, now.revision + 1).await?
            }
            Err(e) => return Err(e),
        };
        if to.send(Ok((current.clone(), rev))).await.is_err() {
            return Ok(());
        }
        // Its value changes until its key goes; then the next leader.
        let mut w = kv
            .watch(
                current.key.clone(),
                WatchOptions {
                    start_revision: rev + 1,
                    ..Default::default()
                },
            )
            .await?;
        'leader: while let Some(batch) = w.next().await {
            let batch = batch?;
            for e in batch.events {
                match e.kind {
                    EventKind::Delete => break 'leader,
                    EventKind::Put if e.kv.value != current.value => {
                        current = e.kv;
                        if to
                            .send(Ok((current.clone(), batch.revision)))
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    EventKind::Put => {}
                }
            }
        }
    }
}

/// The first key created under `name/` at or after revision `from`.
async fn first_put(kv: &dyn Kv, name: &[u8], from: i64) -> Result<(KeyValue, i64)> {
    let p = prefix(name);
    let mut w = kv
        .watch(
            p.clone(),
            WatchOptions {
                range_end: orbit_kv::prefix_end(&p),
                start_revision: from,
                ..Default::default()
            },
        )
        .await?;
    while let Some(batch) = w.next().await {
        let batch = batch?;
        if let Some(e) = batch.events.into_iter().find(|e| e.kind == EventKind::Put) {
            // Someone may have been in line before the one that just came: ask again.
            return match leader(kv, name).await {
                Ok(l) => Ok(l),
                Err(RecipeError::NoLeader) => Ok((e.kv, batch.revision)),
                Err(err) => Err(err),
            };
        }
    }
    Err(KvError::Unavailable("the watch ended".into()).into())
}
