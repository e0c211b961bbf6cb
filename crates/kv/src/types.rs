//! Request and response types of the key-value interface, with etcd v3 semantics.
//!
//! The same types travel through the store's Raft log, so they derive serde; their
//! field meanings are etcd's (see the etcd v3 API reference).

use serde::{Deserialize, Serialize};

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value (empty when the request asked for keys only).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Revision of the last creation of this key.
    pub create_revision: i64,
    /// Revision of the last modification of this key.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after creation).
    pub version: i64,
    /// Lease attached to the key, 0 for none.
    pub lease: i64,
}

/// How a range response is sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// Key order, ascending (etcd's default).
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// What a range response is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// A Range request: one key, or `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty for the single key; `[0]` for every key from `key` on.
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Most keys to return; 0 for no limit.
    pub limit: i64,
    /// Read the store as of this revision; 0 or less for the current one.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Serve from the local replica without a read index.
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Only keys last modified at or after this revision (0: no bound). Like the
    /// other three filters it is a read option: not replicated (the log's format
    /// predates it), so a txn's range refuses it.
    #[serde(skip)]
    pub min_mod_revision: i64,
    /// Only keys last modified at or before this revision (0: no bound).
    #[serde(skip)]
    pub max_mod_revision: i64,
    /// Only keys created at or after this revision (0: no bound).
    #[serde(skip)]
    pub min_create_revision: i64,
    /// Only keys created at or before this revision (0: no bound).
    #[serde(skip)]
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// A request for one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            ..Default::default()
        }
    }

    /// A request for every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        Self {
            range_end: prefix_end(&key),
            key,
            ..Default::default()
        }
    }
}

impl RangeRequest {
    /// Whether any of the revision filters is set.
    pub fn has_revision_filters(&self) -> bool {
        self.min_mod_revision != 0
            || self.max_mod_revision != 0
            || self.min_create_revision != 0
            || self.max_create_revision != 0
    }

    /// Whether `kv` passes the revision filters.
    pub fn passes_filters(&self, kv: &KeyValue) -> bool {
        let above = |v: i64, min: i64| min == 0 || v >= min;
        let below = |v: i64, max: i64| max == 0 || v <= max;
        above(kv.mod_revision, self.min_mod_revision)
            && below(kv.mod_revision, self.max_mod_revision)
            && above(kv.create_revision, self.min_create_revision)
            && below(kv.create_revision, self.max_create_revision)
    }
}

/// The end key that makes `[prefix, end)` cover exactly the keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the range runs to the end.
    vec![0]
}

/// Response to a Range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Store revision the read was served at.
    pub revision: i64,
    /// The keys found (none when count_only).
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut keys off.
    pub more: bool,
    /// Number of keys in the range.
    pub count: i64,
}

/// A Put request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous version.
    pub prev_kv: bool,
    /// Keep the current value (error if the key does not exist).
    pub ignore_value: bool,
    /// Keep the current lease (error if the key does not exist).
    pub ignore_lease: bool,
}

impl PutRequest {
    /// A plain put.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// Response to a Put.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// Revision of the write.
    pub revision: i64,
    /// The previous version, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// A DeleteRange request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// First key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range as in [`RangeRequest::range_end`].
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Return the deleted versions.
    pub prev_kv: bool,
}

impl DeleteRequest {
    /// Delete one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            ..Default::default()
        }
    }

    /// Delete every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        Self {
            range_end: prefix_end(&key),
            key,
            ..Default::default()
        }
    }
}

/// Response to a DeleteRange.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// Store revision after the delete.
    pub revision: i64,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted versions, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The version (0 for a missing key).
    Version(i64),
    /// The create revision (0 for a missing key).
    Create(i64),
    /// The mod revision (0 for a missing key).
    Mod(i64),
    /// The lease (0 for none).
    Lease(i64),
}

/// How a compare compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// Equal.
    Equal,
    /// Greater than.
    Greater,
    /// Less than.
    Less,
    /// Not equal.
    NotEqual,
}

/// One compare of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key (or first key of the range).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range; empty for one key.
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// The comparison.
    pub op: CompareOp,
    /// The target and the operand.
    pub target: CompareTarget,
}

impl Compare {
    /// Compare one key.
    pub fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget) -> Self {
        Self {
            key: key.into(),
            range_end: Vec::new(),
            op,
            target,
        }
    }
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    Delete(DeleteRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// A transaction: if every compare holds, run `success`, else `failure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// The compares, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations when they hold.
    pub success: Vec<TxnOp>,
    /// Operations when one does not.
    pub failure: Vec<TxnOp>,
}

impl TxnRequest {
    /// Runs `success` only if `key` was last written at `mod_revision` (0: absent):
    /// the write-back of a read-modify-write that must not overwrite a concurrent change.
    pub fn if_unchanged(key: impl Into<Vec<u8>>, mod_revision: i64, success: Vec<TxnOp>) -> Self {
        TxnRequest {
            compare: vec![Compare::new(
                key,
                CompareOp::Equal,
                CompareTarget::Mod(mod_revision),
            )],
            success,
            failure: Vec::new(),
        }
    }

    /// Runs `success` only if `key` was created at `create_revision` (0: absent), else
    /// `failure`: the holder of a key acting only while the key is still the one it
    /// made.
    pub fn if_created(
        key: impl Into<Vec<u8>>,
        create_revision: i64,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Self {
        TxnRequest {
            compare: vec![Compare::new(
                key,
                CompareOp::Equal,
                CompareTarget::Create(create_revision),
            )],
            success,
            failure,
        }
    }
}

/// Result of one transaction operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResponse {
    /// Of a read.
    Range(RangeResponse),
    /// Of a write.
    Put(PutResponse),
    /// Of a delete.
    Delete(DeleteResponse),
    /// Of a nested transaction.
    Txn(TxnResponse),
}

/// Response to a Txn.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Store revision after the transaction.
    pub revision: i64,
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per operation of the branch that ran.
    pub responses: Vec<TxnOpResponse>,
}

/// Response to a LeaseGrant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// Store revision.
    pub revision: i64,
    /// The lease id.
    pub id: i64,
    /// The granted time-to-live, seconds.
    pub ttl: i64,
}

/// Response to a LeaseTimeToLive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    /// Store revision.
    pub revision: i64,
    /// The lease id.
    pub id: i64,
    /// Seconds left; -1 when the lease has expired or does not exist.
    pub ttl: i64,
    /// The time-to-live it was granted with.
    pub granted_ttl: i64,
    /// Keys attached, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete.
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: key and mod_revision only).
    pub kv: KeyValue,
    /// The key before the change, when asked for.
    pub prev_kv: Option<KeyValue>,
}

/// Options of a watch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchOptions {
    /// End of the range as in [`RangeRequest::range_end`].
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// First revision to report; 0 for changes after now.
    pub start_revision: i64,
    /// Attach the previous version to each event.
    pub prev_kv: bool,
    /// Send empty progress responses while idle.
    pub progress_notify: bool,
}

/// One batch of watch events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// Store revision the batch brings the watcher up to.
    pub revision: i64,
    /// The events, in revision order.
    pub events: Vec<Event>,
    /// Set when the start revision was compacted; the watch is then over.
    pub compact_revision: i64,
}

/// One member of the store cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member id, never reused.
    pub id: u64,
    /// Human name (empty until the member has started).
    pub name: String,
    /// URLs peers reach it on.
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on.
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// An alarm a member raised, as etcd's `AlarmType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmType {
    /// No alarm: in a request, any alarm.
    None,
    /// The store is out of space: writes that add data are refused until disarmed.
    NoSpace,
    /// A member found its data corrupt.
    Corrupt,
}

impl AlarmType {
    /// etcd's number for it.
    pub fn to_pb(self) -> i32 {
        match self {
            AlarmType::None => 0,
            AlarmType::NoSpace => 1,
            AlarmType::Corrupt => 2,
        }
    }

    /// From etcd's number; unknown numbers are refused.
    pub fn from_pb(n: i32) -> Option<AlarmType> {
        match n {
            0 => Some(AlarmType::None),
            1 => Some(AlarmType::NoSpace),
            2 => Some(AlarmType::Corrupt),
            _ => None,
        }
    }
}

/// What a Maintenance.Alarm request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    /// Lists alarms (of a member, or all for member 0; of a type, or all for `None`).
    Get,
    /// Raises an alarm for a member.
    Activate,
    /// Clears an alarm of a member.
    Deactivate,
}

/// An alarm and the member it is raised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlarmMember {
    /// The member.
    pub member_id: u64,
    /// The alarm.
    pub alarm: AlarmType,
}
