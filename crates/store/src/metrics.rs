//! A member's Raft and backend series, as etcd names its own where there is one
//! (`has_leader`, `leader_changes_seen`, `proposals_committed`, `proposals_applied`).

use crate::node::NodeStatus;
use orbit_telemetry::{Counters, Gauges, Labels};
use std::sync::LazyLock;

pub(crate) struct Metrics {
    term: Gauges<Labels<1>>,
    has_leader: Gauges<Labels<1>>,
    is_leader: Gauges<Labels<1>>,
    leader_changes: Counters<Labels<1>>,
    committed: Gauges<Labels<1>>,
    applied: Gauges<Labels<1>>,
    apply_lag: Gauges<Labels<1>>,
    revision: Gauges<Labels<1>>,
    db_size: Gauges<Labels<1>>,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        term: register(
            "store_raft_term",
            "The member's Raft term",
            Default::default(),
        ),
        has_leader: register(
            "store_has_leader",
            "1 when the member knows a leader",
            Default::default(),
        ),
        is_leader: register(
            "store_is_leader",
            "1 when the member is the leader",
            Default::default(),
        ),
        leader_changes: register(
            "store_leader_changes_seen",
            "Leader changes this member has seen",
            Default::default(),
        ),
        committed: register(
            "store_proposals_committed",
            "The member's last Raft log index",
            Default::default(),
        ),
        applied: register(
            "store_proposals_applied",
            "The last log index the member has applied",
            Default::default(),
        ),
        apply_lag: register(
            "store_apply_lag",
            "Log entries the member holds but has not applied yet",
            Default::default(),
        ),
        revision: register(
            "store_revision",
            "The store's revision on this member",
            Default::default(),
        ),
        db_size: register(
            "store_db_size_bytes",
            "Bytes of keys and values the member holds",
            Default::default(),
        ),
    }
});

fn member(id: u64) -> Labels<1> {
    [("member", format!("{id:x}"))]
}

impl Metrics {
    /// Records a member's status; `previous_leader` is the leader it last saw.
    pub(crate) fn observe(&self, s: &NodeStatus, previous_leader: u64) {
        let l = member(s.id);
        let set = |g: &Gauges<Labels<1>>, v: i64| {
            g.get_or_create(&l).set(v);
        };
        set(&self.term, s.term as i64);
        set(&self.has_leader, (s.leader != 0) as i64);
        set(&self.is_leader, (s.leader == s.id) as i64);
        set(&self.committed, s.raft_index as i64);
        set(&self.applied, s.applied_index as i64);
        set(
            &self.apply_lag,
            s.raft_index.saturating_sub(s.applied_index) as i64,
        );
        set(&self.revision, s.revision);
        set(&self.db_size, s.db_size);
        // Counted from the first leader seen on: a member starting up is not a change.
        let counter = self.leader_changes.get_or_create(&l);
        if s.leader != 0 && previous_leader != 0 && s.leader != previous_leader {
            counter.inc();
        }
    }

    /// Drops a stopped member's series.
    pub(crate) fn forget(&self, id: u64) {
        let l = member(id);
        for g in [
            &self.term,
            &self.has_leader,
            &self.is_leader,
            &self.committed,
            &self.applied,
            &self.apply_lag,
            &self.revision,
            &self.db_size,
        ] {
            g.remove(&l);
        }
        self.leader_changes.remove(&l);
    }
}
