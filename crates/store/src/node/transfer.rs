//! Leadership transfer (etcd's MoveLeader) on openraft 0.9, which has none built in.
//!
//! A follower refuses to vote while it has heard from the leader within the leader
//! lease (openraft's `election_timeout_max`), so a target cannot simply be told to
//! campaign. The leader makes room instead:
//!
//! 1. it checks the target is a voter that has every log entry, and closes its gate:
//!    writes, read-index rounds and lease renewals wait (the heartbeat worker skips
//!    its beats), so nothing refreshes the followers' leases;
//! 2. the other voters hold their own elections for a bounded time, so the target is
//!    the only candidate;
//! 3. once a lease has passed without a word from the leader, the target is told to
//!    campaign; its log is as long as anyone's, so it wins, and its first append makes
//!    the old leader a follower;
//! 4. the gate opens, whatever happened: the waiting requests are told to go to the
//!    new leader, and the held voters are released.
//!
//! Raft's safety does not depend on any of it: a transfer that goes wrong (a target
//! that dies on the way) ends in an ordinary election once the holds lapse.

use super::*;

/// How long the voters hold their elections, in leases: long enough for the target's
/// campaign, short enough that a leader lost mid-transfer is replaced soon after.
const HOLD_LEASES: u32 = 3;

impl StoreNode {
    /// Makes `target` the leader (etcd's MoveLeader), from whichever member is asked.
    pub async fn move_leader(&self, target: NodeId) -> KvResult<()> {
        let req = ForwardRequest::MoveLeader(target);
        if self.leader() == Some(self.id) {
            return match self.transfer_leadership(target).await {
                Ok(_) => Ok(()),
                Err(ForwardError::Kv(e)) => Err(e),
                Err(ForwardError::NotLeader(_)) => Err(KvError::NotLeader),
            };
        }
        let url = self
            .leader()
            .and_then(|l| self.peer_url_of(l))
            .ok_or(KvError::NoLeader)?;
        let timeout = self.lease() * (HOLD_LEASES + 1);
        match self.peers.forward(&url, &req, timeout).await {
            Ok(_) => Ok(()),
            Err(ForwardError::Kv(e)) => Err(e),
            Err(ForwardError::NotLeader(_)) => Err(KvError::NotLeader),
        }
    }

    /// openraft's leader lease: how long a follower trusts a leader it heard from.
    fn lease(&self) -> Duration {
        Duration::from_millis(self.config.election_ms * 2)
    }

    /// Whether a transfer holds this leader's requests back.
    pub(super) fn transferring(&self) -> bool {
        *self.transfer.borrow()
    }

    /// Waits for a transfer under way to end (or the request's time to run out); the
    /// request then goes to whoever leads.
    pub(super) async fn wait_transfer(&self) -> ForwardError {
        let mut rx = self.transfer.subscribe();
        let _ = tokio::time::timeout(self.request_timeout(), rx.wait_for(|t| !*t)).await;
        ForwardError::NotLeader(None)
    }

    /// Holds this member's own elections for `ms` (0: releases a hold now).
    pub(super) fn hold_elections(&self, ms: u64) {
        let raft = self.raft.clone();
        raft.runtime_config().elect(ms == 0);
        if ms > 0 {
            let generation = self.holds.fetch_add(1, Ordering::SeqCst) + 1;
            let holds = self.holds.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                // Only the newest hold's timer releases it.
                if holds.load(Ordering::SeqCst) == generation {
                    raft.runtime_config().elect(true);
                }
            });
        } else {
            self.holds.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Runs a transfer on this member, the leader.
    pub(super) async fn transfer_leadership(
        &self,
        target: NodeId,
    ) -> Result<ForwardResponse, ForwardError> {
        if target == self.id {
            return Ok(ForwardResponse::Done);
        }
        let voters = self.voters();
        let url = match self.peer_url_of(target) {
            Some(url) if voters.contains(&target) => url,
            _ => return Err(KvError::BadLeaderTransferee.into()),
        };
        if self.transfer.send_replace(true) {
            return Err(
                KvError::Unavailable("a leader transfer is already under way".into()).into(),
            );
        }
        let others: Vec<String> = voters
            .iter()
            .filter(|v| **v != target && **v != self.id)
            .filter_map(|v| self.peer_url_of(*v))
            .collect();
        let res = self.transfer_to(target, &url, &others).await;
        self.transfer.send_replace(false);
        let rpc = Duration::from_millis(rpc_timeout_ms(&self.config));
        for peer in &others {
            let _ = self
                .peers
                .forward(peer, &ForwardRequest::HoldElections { ms: 0 }, rpc)
                .await;
        }
        self.hold_elections(0);
        match &res {
            Ok(_) => tracing::info!(to = %format!("{target:x}"), "leadership transferred"),
            Err(e) => {
                tracing::warn!(to = %format!("{target:x}"), error = %e, "leadership transfer failed")
            }
        }
        res
    }

    async fn transfer_to(
        &self,
        target: NodeId,
        url: &str,
        others: &[String],
    ) -> Result<ForwardResponse, ForwardError> {
        let lease = self.lease();
        let rpc = Duration::from_millis(rpc_timeout_ms(&self.config));
        let deadline = tokio::time::Instant::now() + lease * HOLD_LEASES;
        // Writes already proposed finish replicating meanwhile; the target must have
        // them all to win.
        while !self.caught_up_fully(target) {
            if tokio::time::Instant::now() >= deadline {
                return Err(KvError::LeaderTransferTimeout.into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hold = ForwardRequest::HoldElections {
            ms: (lease * HOLD_LEASES).as_millis() as u64,
        };
        for peer in others {
            // A voter that does not answer is down, and campaigns for no one.
            let _ = self.peers.forward(peer, &hold, rpc).await;
        }
        self.hold_elections((lease * HOLD_LEASES).as_millis() as u64);
        // A lease and a little after the last word the followers had from this leader.
        tokio::time::sleep(lease + Duration::from_millis(self.config.heartbeat_ms * 2)).await;
        let mut metrics = self.raft.metrics();
        loop {
            let _ = self
                .peers
                .forward(url, &ForwardRequest::Campaign, rpc)
                .await;
            let won = tokio::time::timeout(
                Duration::from_millis(self.config.election_ms),
                metrics.wait_for(|m| m.current_leader == Some(target)),
            )
            .await;
            if matches!(won, Ok(Ok(_))) {
                return Ok(ForwardResponse::Done);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KvError::LeaderTransferTimeout.into());
            }
        }
    }

    /// Whether `id` has every entry of this leader's log.
    fn caught_up_fully(&self, id: NodeId) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        m.replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned())
            .flatten()
            .is_some_and(|l| l.index >= last)
    }
}
