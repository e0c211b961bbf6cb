//! The Raft state machine: applies committed commands to the [`Mvcc`] state, tells
//! watchers what changed, and keeps the state's snapshot on disk.
//!
//! The state lives in memory; the snapshot file plus the log after it are what make it
//! durable. At start the snapshot is loaded and openraft replays the log from there.

use crate::auth::AuthState;
use crate::mvcc::{Changes, Mvcc, WriteCommand};
use crate::raft_types::*;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use orbit_kv::{KvError, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::broadcast;

/// Version of the snapshot file format: 2 added the alarms to the state, 3 the auth
/// state; an older snapshot is read as a state without them.
const SNAPSHOT_FORMAT: u32 = 3;
/// How many change batches a slow watcher may fall behind before it re-reads history.
const WATCH_BACKLOG: usize = 4096;

/// What the cluster knows of a member beside its Raft membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    /// Its name; empty until it has started.
    pub name: String,
    /// Its client URLs; empty until it has started.
    pub client_urls: Vec<String>,
    /// Added as a voter but still a learner until it catches up.
    pub pending_voter: bool,
}

/// The replicated state as a whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembership,
    /// The key-value state.
    pub kv: Mvcc,
    /// Member attributes by id.
    pub members: BTreeMap<NodeId, MemberAttrs>,
    /// Ids of removed members, never to be used again.
    pub removed: BTreeSet<NodeId>,
    /// Raised alarms (a NOSPACE one refuses writes that add data).
    pub alarms: BTreeSet<orbit_kv::AlarmMember>,
    /// Users, roles, and whether auth is enabled.
    pub auth: AuthState,
}

/// The state as snapshot format 2 kept it: before auth.
#[derive(Deserialize)]
struct StateV2 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    kv: Mvcc,
    members: BTreeMap<NodeId, MemberAttrs>,
    removed: BTreeSet<NodeId>,
    alarms: BTreeSet<orbit_kv::AlarmMember>,
}

/// The state as snapshot format 1 kept it: before alarms.
#[derive(Deserialize)]
struct StateV1 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    kv: Mvcc,
    members: BTreeMap<NodeId, MemberAttrs>,
    removed: BTreeSet<NodeId>,
}

impl State {
    /// Decodes a snapshot's state written in snapshot `format`.
    fn decode(format: u32, data: &[u8]) -> Result<State, bincode::Error> {
        match format {
            1 => {
                let v1: StateV1 = bincode::deserialize(data)?;
                Ok(State {
                    last_applied: v1.last_applied,
                    membership: v1.membership,
                    kv: v1.kv,
                    members: v1.members,
                    removed: v1.removed,
                    alarms: BTreeSet::new(),
                    auth: AuthState::default(),
                })
            }
            2 => {
                let v2: StateV2 = bincode::deserialize(data)?;
                Ok(State {
                    last_applied: v2.last_applied,
                    membership: v2.membership,
                    kv: v2.kv,
                    members: v2.members,
                    removed: v2.removed,
                    alarms: v2.alarms,
                    auth: AuthState::default(),
                })
            }
            _ => bincode::deserialize(data),
        }
    }

    /// Whether a NOSPACE alarm is raised.
    pub fn out_of_space(&self) -> bool {
        self.alarms
            .iter()
            .any(|a| a.alarm == orbit_kv::AlarmType::NoSpace)
    }
}

/// One applied write as watchers see it.
#[derive(Debug)]
pub struct ChangeBatch {
    /// The revision the write made.
    pub revision: i64,
    /// Its changes, in order.
    pub events: Changes,
}

/// The state shared between the state machine, readers and watchers.
pub struct Shared {
    state: RwLock<State>,
    changes: broadcast::Sender<Arc<ChangeBatch>>,
    quota: u64,
}

impl Shared {
    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to applied changes. Subscribe while holding [`Shared::read`] to know
    /// exactly which revision the subscription starts after.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeBatch>> {
        self.changes.subscribe()
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The state machine of one member.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
}

fn sm_err(verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

impl StateMachine {
    /// Opens the state machine in `dir`, loading the last snapshot if there is one.
    /// `quota` is the most bytes of key-value data the store accepts (0: no limit).
    pub fn open(dir: &Path, quota: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut state = State::default();
        if let Some(snap) = read_snapshot_file(&dir.join("snapshot"))? {
            state = State::decode(snap.format, &snap.data).map_err(std::io::Error::other)?;
        }
        let (tx, _) = broadcast::channel(WATCH_BACKLOG);
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                changes: tx,
                quota,
            }),
            dir: dir.to_path_buf(),
        })
    }

    /// The state shared with readers.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_snapshot_file(path: &Path) -> std::io::Result<Option<SnapshotFile>> {
    let mut buf = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if buf.len() < 4 {
        return Err(std::io::Error::other(format!(
            "{}: truncated snapshot",
            path.display()
        )));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(std::io::Error::other(format!(
            "{}: snapshot checksum mismatch; the file is corrupt",
            path.display()
        )));
    }
    let snap: SnapshotFile = bincode::deserialize(body).map_err(std::io::Error::other)?;
    if !(1..=SNAPSHOT_FORMAT).contains(&snap.format) {
        return Err(std::io::Error::other(format!(
            "{}: snapshot format {} is not supported",
            path.display(),
            snap.format
        )));
    }
    Ok(Some(snap))
}

/// Writes `state` as the snapshot in `dir` (a restored member's first state).
pub(crate) fn write_state_snapshot(
    dir: &Path,
    meta: &SnapshotMeta,
    state: &State,
) -> std::io::Result<()> {
    let data = bincode::serialize(state).map_err(std::io::Error::other)?;
    write_snapshot_file(dir, meta, &data)
}

/// Writes the snapshot atomically: a temporary file, fsynced, renamed over the old one.
fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<()> {
    let file = SnapshotFile {
        format: SNAPSHOT_FORMAT,
        meta: meta.clone(),
        data: data.to_vec(),
    };
    let mut body = bincode::serialize(&file).map_err(std::io::Error::other)?;
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("snapshot.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("snapshot"))?;
    std::fs::File::open(dir)?.sync_all()
}

impl StateMachine {
    fn apply_request(&self, s: &mut State, req: Request, quota: u64) -> Response {
        match req {
            // With NOSPACE raised, what adds data is refused until the alarm is
            // cleared, as etcd: deletes and compaction still free space.
            Request::Write(cmd) if s.out_of_space() && adds_data(&cmd) => {
                Response::Write(Err(KvError::NoSpace))
            }
            // A client's write: allowed by the auth state at this point of the log, or
            // refused here on every member alike.
            Request::AsUser { user, write } => {
                match s.auth.check_write(user.as_deref(), &s.kv, &write) {
                    Ok(()) => self.apply_request(s, Request::Write(write), quota),
                    Err(e) => Response::Write(Err(e.into())),
                }
            }
            Request::Auth { caller, cmd } => Response::Auth(s.auth.apply(caller.as_deref(), &cmd)),
            Request::Write(cmd) => {
                let (res, events) = s.kv.apply(&cmd, quota);
                if !events.is_empty() {
                    // Sent under the write lock, so batches go out in revision order
                    // and a reader subscribing under the read lock misses none.
                    let _ = self.shared.changes.send(Arc::new(ChangeBatch {
                        revision: s.kv.revision(),
                        events,
                    }));
                }
                Response::Write(res)
            }
            Request::Member(cmd) => {
                apply_member(s, &cmd);
                Response::Member
            }
            Request::Batch(reqs) => Response::Batch(
                reqs.into_iter()
                    .map(|r| self.apply_request(s, r, quota))
                    .collect(),
            ),
        }
    }
}

/// Whether a write adds data (what a NOSPACE alarm refuses): a put, a transaction
/// with a put in either branch, a lease grant.
fn adds_data(cmd: &WriteCommand) -> bool {
    fn puts(ops: &[TxnOp]) -> bool {
        ops.iter().any(|op| match op {
            TxnOp::Put(_) => true,
            TxnOp::Txn(t) => puts(&t.success) || puts(&t.failure),
            _ => false,
        })
    }
    match cmd {
        WriteCommand::Put(_) | WriteCommand::LeaseGrant { .. } => true,
        WriteCommand::Txn(t) => puts(&t.success) || puts(&t.failure),
        _ => false,
    }
}

fn apply_member(state: &mut State, cmd: &MemberCommand) {
    match cmd {
        MemberCommand::Publish {
            id,
            name,
            client_urls,
        } => {
            let m = state.members.entry(*id).or_default();
            m.name = name.clone();
            m.client_urls = client_urls.clone();
        }
        MemberCommand::Added { id, voter } => {
            state.members.entry(*id).or_default().pending_voter = *voter;
        }
        MemberCommand::Promoted { id } => {
            if let Some(m) = state.members.get_mut(id) {
                m.pending_voter = false;
            }
        }
        MemberCommand::Removed { id } => {
            state.members.remove(id);
            state.removed.insert(*id);
        }
        MemberCommand::Alarm { alarm, active } => {
            if *active {
                state.alarms.insert(*alarm);
            } else {
                state.alarms.remove(alarm);
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let quota = self.shared.quota;
        let mut s = self.write_lock();
        let mut out = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Response::Member),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Response::Member);
                }
                EntryPayload::Normal(req) => out.push(self.apply_request(&mut s, req, quota)),
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // A leader of this build sends the current format; one not yet upgraded an
        // older one.
        let state = State::decode(SNAPSHOT_FORMAT, &data)
            .or_else(|_| State::decode(2, &data))
            .or_else(|_| State::decode(1, &data))
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        write_snapshot_file(&self.dir, meta, &data).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let mut s = self.write_lock();
        *s = state;
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snap = read_snapshot_file(&self.dir.join("snapshot"))
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, meta) = {
            let s = self.shared.read();
            let data = bincode::serialize(&*s).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: format!(
                    "{}-{}",
                    s.last_applied.map(|l| l.leader_id.term).unwrap_or(0),
                    s.last_applied.map(|l| l.index).unwrap_or(0)
                ),
            };
            (data, meta)
        };
        let dir = self.dir.clone();
        let (data, meta) = tokio::task::spawn_blocking(move || {
            write_snapshot_file(&dir, &meta, &data).map(|_| (data, meta))
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_kv::{PutRequest, RangeRequest};

    /// A snapshot file as a given format wrote it.
    fn write_format(dir: &Path, format: u32, data: Vec<u8>) {
        let file = SnapshotFile {
            format,
            meta: SnapshotMeta::default(),
            data,
        };
        let mut body = bincode::serialize(&file).unwrap();
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.join("snapshot"), body).unwrap();
    }

    #[test]
    fn a_format_1_snapshot_loads_without_alarms_and_an_unknown_format_is_refused() {
        #[derive(Serialize)]
        struct V1<'a> {
            last_applied: &'a Option<LogId>,
            membership: &'a StoredMembership,
            kv: &'a Mvcc,
            members: &'a BTreeMap<NodeId, MemberAttrs>,
            removed: &'a BTreeSet<NodeId>,
        }
        let mut s = State::default();
        let (res, _) = s.kv.apply(&WriteCommand::Put(PutRequest::new("k", "v")), 0);
        res.unwrap();
        let v1 = bincode::serialize(&V1 {
            last_applied: &s.last_applied,
            membership: &s.membership,
            kv: &s.kv,
            members: &s.members,
            removed: &s.removed,
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_format(dir.path(), 1, v1);
        let sm = StateMachine::open(dir.path(), 0).unwrap();
        let state = sm.shared().read().clone();
        assert!(state.alarms.is_empty());
        let r = state.kv.range(&RangeRequest::key("k")).unwrap();
        assert_eq!(r.kvs[0].value, b"v");

        write_format(dir.path(), 4, bincode::serialize(&state).unwrap());
        let e = StateMachine::open(dir.path(), 0).err().unwrap().to_string();
        assert!(e.contains("snapshot format 4"), "{e}");
    }
}
