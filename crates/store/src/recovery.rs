//! Recovery when quorum is lost for good: turn the most advanced surviving member into
//! a one-member cluster (as etcd's `--force-new-cluster`). Never automatic: an
//! operator runs it on a stopped member's data dir, then starts that member again.
//!
//! It appends to the member's log a membership entry naming only this member. Raft
//! uses the latest membership in a log whether committed or not, so on start the
//! member elects itself and commits everything in its log, that entry included. Like
//! etcd's, this may commit entries the old cluster never committed: run it on the
//! member with the most advanced log.

use crate::log_store::LogStore;
use crate::raft_types::*;
use crate::state_machine::StateMachine;
use crate::StoreError;
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the recovery did.
#[derive(Debug)]
pub struct Recovered {
    /// The member's id.
    pub id: NodeId,
    /// Voters before.
    pub old_voters: BTreeSet<NodeId>,
    /// Index of the appended membership entry.
    pub index: u64,
}

/// Rewrites a stopped member's data dir so it starts as the only member of its cluster.
pub async fn force_new_cluster(data_dir: &Path) -> Result<Recovered, StoreError> {
    let id = crate::node::member_id_of(data_dir)?;
    let _lock = crate::node::lock_data_dir(data_dir)?;
    let raft_dir = data_dir.join("raft");
    let mut log = LogStore::open(&raft_dir)?;
    let sm = StateMachine::open(&raft_dir, 0)?;
    let state = log
        .get_log_state()
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let last = state.last_log_id.ok_or_else(|| {
        StoreError::Config(format!(
            "{} has an empty log: nothing to recover",
            data_dir.display()
        ))
    })?;
    // The latest membership: in the log after the snapshot, else the snapshot's.
    let first = state.last_purged_log_id.map_or(0, |l| l.index + 1);
    let entries = log
        .try_get_log_entries(first..=last.index)
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let membership = entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| sm.shared().read().membership.membership().clone());
    let me = membership.get_node(&id).cloned().ok_or_else(|| {
        StoreError::Config(format!(
            "member {id:x} is not in its own latest membership; recover from another member"
        ))
    })?;
    let old_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let vote = log
        .read_vote()
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    // The entry is written as by this member leading a term above every term seen, and
    // the vote records that leadership: an entry of an older term from a leader the
    // vote does not name would be taken for an uncommitted stray and overwritten.
    let term = vote
        .map(|v| v.leader_id.term)
        .unwrap_or(0)
        .max(last.leader_id.term)
        + 1;
    log.save_vote(&Vote::new_committed(term, id))
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, id), last.index + 1),
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, me)]),
        )),
    };
    log.append_synced(entry)?;
    Ok(Recovered {
        id,
        old_voters,
        index: last.index + 1,
    })
}
