//! The types openraft is instantiated with, and the commands that go through the log.

use crate::mvcc::{WriteCommand, WriteResult};
use orbit_kv::KvError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

/// Member id: a random or token-derived u64, never reused within a cluster.
pub type NodeId = u64;

/// What the cluster membership records of a member: where its peers reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// The URL of the member's peer (Raft) endpoint.
    pub peer_url: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.peer_url)
    }
}

/// A command replicated through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A change to the key-value state.
    Write(WriteCommand),
    /// A change to what the cluster knows of its members beside the Raft membership.
    Member(MemberCommand),
    /// Several requests in one log entry, applied in order as if each had its own
    /// (group commit: one entry, one fsync and one replication round for many writes).
    Batch(Vec<Request>),
    /// A change to users, roles or auth itself, from `caller` (checked when applied).
    /// Appended after the older variants so log entries written before it decode.
    Auth {
        /// Who asked; `None`: no user (allowed only while auth is disabled).
        caller: Option<String>,
        /// The change.
        cmd: crate::auth::AuthCommand,
    },
    /// A client's write, applied only if `user` may make it at the point in the log
    /// where it lands. Writes of orbit's own processes on their member carry none.
    AsUser {
        /// The client's user; `None`: it sent none.
        user: Option<String>,
        /// The write.
        write: WriteCommand,
    },
}

/// Member bookkeeping that lives in the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberCommand {
    /// A member says its name and client URLs (at start).
    Publish {
        /// Member id.
        id: NodeId,
        /// Its name.
        name: String,
        /// Its client URLs.
        client_urls: Vec<String>,
    },
    /// A member was added; `voter` says it is to be promoted once it has caught up.
    Added {
        /// Member id.
        id: NodeId,
        /// Whether it was added as a voter (etcd's MemberAdd without `--learner`).
        voter: bool,
    },
    /// A learner became a voter.
    Promoted {
        /// Member id.
        id: NodeId,
    },
    /// A member was removed; its id is never accepted again.
    Removed {
        /// Member id.
        id: NodeId,
    },
    /// An alarm is raised (`active`) or cleared for a member (etcd's Alarm; appended
    /// last so log entries written before it still decode).
    Alarm {
        /// The alarm and its member.
        alarm: orbit_kv::AlarmMember,
        /// Raised, or cleared.
        active: bool,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Write(w) => write!(f, "write {w:?}"),
            Request::Member(m) => write!(f, "member {m:?}"),
            Request::Batch(b) => write!(f, "batch of {}", b.len()),
            // The command may hold a password hash: its kind only.
            Request::Auth { caller, .. } => write!(f, "auth change by {caller:?}"),
            Request::AsUser { user, write: w } => write!(f, "write by {user:?} {w:?}"),
        }
    }
}

/// The result of applying a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Of a write.
    Write(Result<WriteResult, KvError>),
    /// Of member bookkeeping.
    Member,
    /// Of a batch, one per request.
    Batch(Vec<Response>),
    /// Of an auth change.
    Auth(Result<(), orbit_kv::AuthError>),
}

openraft::declare_raft_types!(
    /// orbit's Raft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// A Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// The membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
