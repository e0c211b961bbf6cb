//! Errors of the key-value interface, with etcd's messages.

/// What went wrong with a key-value request. The messages are etcd's, so a user who
/// knows etcd recognises them and a client library that parses them keeps working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    /// The asked revision is older than the compaction point.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The compaction point.
        compact_revision: i64,
    },
    /// The asked revision is newer than the store's.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease does not exist (never granted, revoked or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with the asked id exists already.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease TTL out of range.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// More operations in one txn than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The request is larger than the limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// An empty key.
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    /// Two writes to one key in one txn.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// ignore_value or ignore_lease on a missing key.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The backend quota is used up; compact and defragment, or raise the quota.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// No leader is known: the cluster has lost quorum or is electing.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The member does not exist.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with these peer URLs exists already.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// The id was used by a member that was removed; ids are never reused.
    #[error("etcdserver: ID removed")]
    IdRemoved,
    /// Promote of a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// Promote of a learner that has not caught up.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The change would leave the cluster without quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Another malformed request.
    #[error("etcdserver: {0}")]
    InvalidArgument(String),
    /// The request did not finish in time; it may or may not have been applied.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The store could not be reached, or failed.
    #[error("{0}")]
    Unavailable(String),
}

impl KvError {
    /// Whether the request is worth retrying as is (elsewhere or later).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KvError::NoLeader | KvError::Timeout | KvError::Unavailable(_)
        )
    }
}

/// Result of a key-value request.
pub type KvResult<T> = Result<T, KvError>;
