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
    /// Refused by authentication or by the caller's permissions (appended last so
    /// members of an older build still decode the variants before it).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A leader-only request reached a member that does not lead.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// MoveLeader to a member that is not a voter of the cluster.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader did not make the target leader in time; whoever leads now leads.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
}

/// Why authentication or an auth-management request was refused, with etcd's
/// messages (clients match on them: Go's clientv3 re-authenticates on
/// [`AuthError::InvalidToken`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum AuthError {
    /// Auth is enabled and the request carries no user (no token, no certificate).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// Wrong user name or password, or a user that has no password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    Failed,
    /// The caller's roles do not allow the request.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// The token is unknown, expired, or from before a password change.
    #[error("etcdserver: invalid auth token")]
    InvalidToken,
    /// Authenticate while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    NotEnabled,
    /// Auth enable without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// Auth enable while `root` lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// User add of a name that exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// No user of that name.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// Role add of a name that exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// No role of that name.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// A role with an empty name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Grant permission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// Revoke of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// Revoke of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// A change that would lock everyone out (deleting `root`, or its role, while auth
    /// is enabled), or a malformed permission range.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
}

impl AuthError {
    /// Every variant, for matching etcd's messages.
    pub const ALL: [AuthError; 16] = [
        AuthError::UserEmpty,
        AuthError::Failed,
        AuthError::PermissionDenied,
        AuthError::InvalidToken,
        AuthError::NotEnabled,
        AuthError::RootUserNotExist,
        AuthError::RootRoleNotExist,
        AuthError::UserAlreadyExist,
        AuthError::UserNotFound,
        AuthError::RoleAlreadyExist,
        AuthError::RoleNotFound,
        AuthError::RoleEmpty,
        AuthError::PermissionNotGiven,
        AuthError::RoleNotGranted,
        AuthError::PermissionNotGranted,
        AuthError::InvalidAuthMgmt,
    ];

    /// The gRPC code etcd answers it with.
    pub fn code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            AuthError::PermissionDenied => Code::PermissionDenied,
            AuthError::InvalidToken => Code::Unauthenticated,
            AuthError::UserEmpty
            | AuthError::Failed
            | AuthError::RoleEmpty
            | AuthError::PermissionNotGiven
            | AuthError::InvalidAuthMgmt => Code::InvalidArgument,
            AuthError::NotEnabled
            | AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted => Code::FailedPrecondition,
        }
    }
}

impl KvError {
    /// Whether the request is worth retrying as is (elsewhere or later).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KvError::NoLeader
                | KvError::Timeout
                | KvError::Unavailable(_)
                | KvError::NotLeader
                | KvError::LeaderTransferTimeout
        )
    }
}

/// Result of a key-value request.
pub type KvResult<T> = Result<T, KvError>;
