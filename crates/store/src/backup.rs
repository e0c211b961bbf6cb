//! Backups of the key-value state in orbit's own format: what the Maintenance Snapshot
//! RPC streams (so `etcdctl snapshot save FILE` takes one), what `satellite storage
//! snapshot status` describes and what `snapshot restore` makes new members from.
//!
//! A backup is the data, never the cluster: every key with its history, every lease,
//! the revision and the compaction point, and the users and roles with auth's on/off
//! switch (as etcd's snapshot keeps them), but no membership, member ids or alarms.
//! Restoring gives new members (ids from the new cluster's token, names and peer URLs)
//! that start as one cluster from the backup's state.
//!
//! File layout, all integers little-endian:
//!
//! ```text
//! "ORBITBAK" | format u32 | header length u32 | header (JSON) | body length u64 |
//! body (bincode of the key-value state, then of the auth state) |
//! zeros to a multiple of 512 bytes |
//! SHA-256 of everything before it (32 bytes)
//! ```
//!
//! The trailer is etcd's: `etcdctl snapshot save` accepts a stream only when its
//! length is 32 past a multiple of 512 (a SHA-256 after sector-aligned data).
//!
//! The format is checked before anything else is read, and the checksum before the
//! body is decoded: an unknown format, a cut-short file or a changed byte is refused
//! and nothing is restored.

use crate::auth::AuthState;
use crate::mvcc::Mvcc;
use crate::raft_types::*;
use crate::state_machine::{MemberAttrs, State};
use crate::StoreError;
use openraft::{CommittedLeaderId, Membership, StoredMembership};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"ORBITBAK";
/// The backup format this build writes. The body is bincode of [`Mvcc`] and
/// [`AuthState`]: a change to their fields is a new format. Format 1 (no auth state)
/// is still read.
pub const FORMAT: u32 = 2;
const HASH: usize = 32;

/// What a backup says of itself, readable without decoding its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The store's revision when it was taken.
    pub revision: i64,
    /// The revision its history is compacted to.
    pub compact_revision: i64,
    /// Keys that existed.
    pub keys: usize,
    /// Versions kept, deletes included.
    pub versions: usize,
    /// Leases.
    pub leases: usize,
    /// Unix time (s) it was taken.
    pub taken: u64,
    /// Users (0 in a format-1 backup, which kept none).
    #[serde(default)]
    pub users: usize,
    /// Roles.
    #[serde(default)]
    pub roles: usize,
    /// Whether auth was enabled.
    #[serde(default)]
    pub auth_enabled: bool,
}

/// A backup that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a backup of this kind.
    #[error("not an orbit store backup (an etcd snapshot? restore those with etcdutl)")]
    NotABackup,
    /// Written by a newer (or unknown) build.
    #[error("backup format {0} is not supported by this build (it reads formats 1 to {FORMAT})")]
    Format(u32),
    /// Cut short: a partial download or copy.
    #[error("the backup is cut short ({have} bytes, {want} expected): a partial copy?")]
    Truncated {
        /// Bytes there are.
        have: usize,
        /// Bytes the layout needs.
        want: usize,
    },
    /// A byte changed.
    #[error("the backup's checksum does not match: the file is corrupt")]
    Checksum,
    /// The checksum matches but the contents do not decode.
    #[error("the backup does not decode: {0}")]
    Malformed(String),
}

/// The backup of `kv` and `auth`, taken at `now`.
pub fn encode(kv: &Mvcc, auth: &AuthState, now: u64) -> Vec<u8> {
    let header = Header {
        revision: kv.revision(),
        compact_revision: kv.compact_revision(),
        keys: kv.live_keys(),
        versions: kv.stored_versions(),
        leases: kv.leases().len(),
        taken: now,
        users: auth.users.len(),
        roles: auth.roles.len(),
        auth_enabled: auth.enabled,
    };
    let header = serde_json::to_vec(&header).expect("a header serializes");
    let body = bincode::serialize(&(kv, auth)).expect("the state serializes");
    frame(FORMAT, &header, &body)
}

/// The file layout around a `format` backup's `header` and `body`.
fn frame(format: u32, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 16 + header.len() + body.len() + HASH);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padding(out.len()), 0);
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    out
}

/// Zeros after `n` bytes to reach a multiple of 512.
fn padding(n: usize) -> usize {
    (512 - n % 512) % 512
}

fn need(b: &[u8], want: usize) -> Result<(), BackupError> {
    if b.len() < want {
        return Err(BackupError::Truncated {
            have: b.len(),
            want,
        });
    }
    Ok(())
}

/// Checks `b` whole (format, length, checksum) and reads its header; returns the
/// header and where the body is.
fn check(b: &[u8]) -> Result<(Header, u32, std::ops::Range<usize>), BackupError> {
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    need(b, 16)?;
    let format = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if !(1..=FORMAT).contains(&format) {
        return Err(BackupError::Format(format));
    }
    let header_len = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")) as usize;
    let body_at = 16 + header_len + 8;
    need(b, body_at)?;
    let body_len = u64::from_le_bytes(b[body_at - 8..body_at].try_into().expect("8 bytes"));
    let end = usize::try_from(body_len)
        .ok()
        .and_then(|n| n.checked_add(body_at))
        .ok_or(BackupError::Truncated {
            have: b.len(),
            want: usize::MAX,
        })?;
    let sealed = end + padding(end);
    need(b, sealed + HASH)?;
    if b.len() > sealed + HASH {
        return Err(BackupError::Malformed(format!(
            "{} bytes after its end",
            b.len() - sealed - HASH
        )));
    }
    if Sha256::digest(&b[..sealed])[..] != b[sealed..] {
        return Err(BackupError::Checksum);
    }
    if b[end..sealed].iter().any(|&z| z != 0) {
        return Err(BackupError::Malformed("padding that is not zeros".into()));
    }
    let header: Header = serde_json::from_slice(&b[16..16 + header_len])
        .map_err(|e| BackupError::Malformed(format!("header: {e}")))?;
    Ok((header, format, body_at..end))
}

/// The header of a backup, after checking it whole.
pub fn header(b: &[u8]) -> Result<Header, BackupError> {
    check(b).map(|(h, _, _)| h)
}

/// The state a backup holds, after checking it whole.
pub fn decode(b: &[u8]) -> Result<(Header, Mvcc, AuthState), BackupError> {
    let (header, format, body) = check(b)?;
    let malformed = |e: bincode::Error| BackupError::Malformed(e.to_string());
    let (kv, auth): (Mvcc, AuthState) = match format {
        1 => (
            bincode::deserialize(&b[body]).map_err(malformed)?,
            AuthState::default(),
        ),
        _ => bincode::deserialize(&b[body]).map_err(malformed)?,
    };
    if kv.revision() != header.revision {
        return Err(BackupError::Malformed(format!(
            "the header says revision {}, the state {}",
            header.revision,
            kv.revision()
        )));
    }
    Ok((header, kv, auth))
}

/// Where and as what a restored member starts: etcd's `snapshot restore` flags.
#[derive(Clone, Debug)]
pub struct Restore {
    /// This member's name.
    pub name: String,
    /// Every member of the new cluster: name and peer URL (this one among them).
    pub initial_cluster: Vec<(String, String)>,
    /// The new cluster's token.
    pub token: String,
    /// The data dir to make; it must not exist, or be empty.
    pub data_dir: PathBuf,
}

/// Makes `r.data_dir` a member of a new cluster holding backup `b`'s state. Every
/// member of the new cluster is restored from the same backup with the same
/// `initial_cluster` and token, then started as usual (`storage init` with that data
/// dir). Nothing is written unless the backup checks out and the flags fit.
pub fn restore(b: &[u8], r: &Restore) -> Result<Header, StoreError> {
    let (header, kv, auth) = decode(b).map_err(|e| StoreError::Config(e.to_string()))?;
    let me = r
        .initial_cluster
        .iter()
        .find(|(n, _)| *n == r.name)
        .ok_or_else(|| {
            StoreError::Config(format!(
                "--initial-cluster does not name this member ({})",
                r.name
            ))
        })?;
    let ids: BTreeMap<NodeId, (String, String)> = r
        .initial_cluster
        .iter()
        .map(|(n, u)| {
            (
                crate::node::initial_member_id(&r.token, n, u),
                (n.clone(), u.clone()),
            )
        })
        .collect();
    if ids.len() != r.initial_cluster.len() {
        return Err(StoreError::Config(
            "--initial-cluster names a member twice".into(),
        ));
    }
    if is_used(&r.data_dir)? {
        return Err(StoreError::Config(format!(
            "{} exists and is not empty: restore into a new data dir",
            r.data_dir.display()
        )));
    }
    // The state as if the new cluster had applied one entry: its membership.
    let log_id = LogId::new(CommittedLeaderId::new(1, 0), 1);
    let membership = Membership::new(
        vec![ids.keys().copied().collect::<BTreeSet<_>>()],
        ids.iter()
            .map(|(id, (_, url))| {
                (
                    *id,
                    PeerNode {
                        peer_url: url.clone(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    );
    let stored = StoredMembership::new(Some(log_id), membership);
    let state = State {
        last_applied: Some(log_id),
        membership: stored.clone(),
        kv,
        members: ids
            .iter()
            .map(|(id, (name, _))| {
                (
                    *id,
                    MemberAttrs {
                        name: name.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        removed: BTreeSet::new(),
        alarms: BTreeSet::new(),
        auth,
    };
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: stored,
        snapshot_id: "restored-1-1".into(),
    };
    let id = crate::node::initial_member_id(&r.token, &me.0, &me.1);
    crate::node::create_private_dir(&r.data_dir)?;
    let raft_dir = r.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)?;
    crate::state_machine::write_state_snapshot(&raft_dir, &meta, &state)?;
    // The member file last: a data dir without it is refused at start, so a restore
    // cut short by a crash leaves nothing that starts.
    crate::node::write_member(&r.data_dir, id, &r.name, &r.token)?;
    Ok(header)
}

fn is_used(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::WriteCommand;
    use orbit_kv::{PutRequest, RangeRequest};

    fn state() -> Mvcc {
        let mut kv = Mvcc::default();
        for i in 0..50u32 {
            let put = PutRequest::new(format!("k{i:03}"), vec![i as u8; 100]);
            kv.apply(&WriteCommand::Put(put.clone()), 0).0.unwrap();
            kv.apply(&WriteCommand::Put(put), 0).0.unwrap();
        }
        kv
    }

    fn auth() -> AuthState {
        use crate::auth::{AuthCommand, ROOT};
        let mut a = AuthState::default();
        for c in [
            AuthCommand::UserAdd {
                name: ROOT.into(),
                password: Some("hash".into()),
            },
            AuthCommand::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
            AuthCommand::RoleAdd { name: "app".into() },
            AuthCommand::Enable { secret: [3; 32] },
        ] {
            a.apply(None, &c).unwrap();
        }
        a
    }

    /// A backup as format 1 wrote it: the key-value state alone.
    fn format_1(kv: &Mvcc) -> Vec<u8> {
        let b = encode(kv, &AuthState::default(), 7);
        let (_, _, body) = check(&b).unwrap();
        frame(1, &b[16..body.start - 8], &bincode::serialize(kv).unwrap())
    }

    #[test]
    fn a_format_1_backup_restores_without_users() {
        let kv = state();
        let (h, back, auth) = decode(&format_1(&kv)).unwrap();
        assert_eq!(h.revision, 101);
        assert_eq!(back.revision(), 101);
        assert_eq!(auth, AuthState::default());
    }

    #[test]
    fn a_backup_round_trips_with_its_history() {
        let kv = state();
        let b = encode(&kv, &auth(), 7);
        let (h, back, users) = decode(&b).unwrap();
        assert_eq!((h.revision, h.keys, h.versions, h.taken), (101, 50, 100, 7));
        assert_eq!((h.users, h.roles, h.auth_enabled), (1, 1, true));
        assert_eq!(users, auth(), "users, roles and the switch are kept");
        assert_eq!(
            bincode::serialize(&back).unwrap(),
            bincode::serialize(&kv).unwrap()
        );
        let old = back
            .range(&RangeRequest {
                key: b"k000".to_vec(),
                revision: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(old.kvs[0].version, 1, "history is kept");
    }

    #[test]
    fn cut_short_changed_or_foreign_backups_are_refused() {
        let b = encode(&state(), &AuthState::default(), 1);
        for n in [0, 5, 12, 20, b.len() / 2, b.len() - 33, b.len() - 1] {
            let e = decode(&b[..n]).unwrap_err();
            assert!(
                matches!(e, BackupError::Truncated { .. } | BackupError::NotABackup),
                "{n} bytes: {e}"
            );
        }
        assert_eq!(b.len() % 512, 32, "etcdctl's length rule");
        for at in [40, b.len() / 2, b.len() - 40, b.len() - 1] {
            let mut c = b.clone();
            c[at] ^= 1;
            assert!(
                matches!(decode(&c), Err(BackupError::Checksum)),
                "a byte changed at {at}"
            );
        }
        let mut newer = b.clone();
        newer[8] = 3;
        assert!(matches!(decode(&newer), Err(BackupError::Format(3))));
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(BackupError::Malformed(_))));
        assert!(matches!(
            decode(b"SQLite format 3\0 and more"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn restore_refuses_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let b = encode(&state(), &AuthState::default(), 1);
        let r = Restore {
            name: "a".into(),
            initial_cluster: vec![("a".into(), "http://127.0.0.1:1".into())],
            token: "t".into(),
            data_dir: dir.path().join("a"),
        };
        let mut bad = b.clone();
        bad.truncate(b.len() - 1);
        assert!(restore(&bad, &r)
            .unwrap_err()
            .to_string()
            .contains("cut short"));
        assert!(!r.data_dir.exists(), "a refused restore wrote nothing");
        let stranger = Restore {
            name: "z".into(),
            ..r.clone()
        };
        assert!(restore(&b, &stranger).is_err());
        assert!(!r.data_dir.exists());
        restore(&b, &r).unwrap();
        assert!(r.data_dir.join("member.json").exists());
        let again = restore(&b, &r).unwrap_err().to_string();
        assert!(again.contains("not empty"), "{again}");
    }
}
