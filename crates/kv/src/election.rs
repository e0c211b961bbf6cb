//! Leader election over a lease: exactly one candidate holds a key at a time.
//!
//! A candidate grants itself a lease and tries to create the election key under it
//! (a transaction that only succeeds while the key does not exist). The holder keeps
//! its lease alive; when it dies its lease expires, the store deletes the key, and the
//! next candidate to try takes it. Every step is one call of [`Candidate::step`], so a
//! process drives its campaign from a periodic worker: with a step every `ttl / 3`, a
//! standby takes over at most one step after the old holder's lease ends.
//!
//! Works against orbit's store and a real etcd alike (plain lease and txn calls).

use crate::{Compare, CompareOp, CompareTarget, Kv, KvError, KvResult, PutRequest, TxnOp};
use std::sync::Mutex;

/// What a candidate knows of its campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Whether this candidate holds the key.
    pub leader: bool,
    /// The value the holder wrote (its identity), when the key is held by anyone.
    pub holder: Option<String>,
    /// This candidate's lease (0 before the first step).
    pub lease: i64,
}

/// One contender for the key `key`, identified by `value`.
pub struct Candidate {
    key: String,
    value: String,
    ttl: i64,
    state: Mutex<Standing>,
}

impl Candidate {
    /// A candidate for `key` that writes `value` when it wins, with a lease of `ttl`
    /// seconds.
    pub fn new(key: impl Into<String>, value: impl Into<String>, ttl: i64) -> Candidate {
        Candidate {
            key: key.into(),
            value: value.into(),
            ttl: ttl.max(1),
            state: Mutex::new(Standing::default()),
        }
    }

    /// The lease TTL in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The standing as of the last step.
    pub fn standing(&self) -> Standing {
        self.state.lock().unwrap().clone()
    }

    /// Whether this candidate led as of its last step.
    pub fn is_leader(&self) -> bool {
        self.state.lock().unwrap().leader
    }

    /// One step of the campaign: renew this candidate's lease (granting a new one if it
    /// expired), then hold or try to take the key. Returns whether it leads now. An
    /// error leaves it a follower: a leader that cannot renew must assume it lost.
    pub async fn step(&self, kv: &dyn Kv) -> KvResult<bool> {
        let result = self.try_step(kv).await;
        let mut s = self.state.lock().unwrap();
        match &result {
            Ok((leader, holder, lease)) => {
                s.leader = *leader;
                s.holder = holder.clone();
                s.lease = *lease;
            }
            Err(_) => s.leader = false,
        }
        result.map(|(leader, _, _)| leader)
    }

    async fn try_step(&self, kv: &dyn Kv) -> KvResult<(bool, Option<String>, i64)> {
        let mut lease = self.state.lock().unwrap().lease;
        let alive = match lease {
            0 => false,
            id => match kv.lease_keep_alive(id).await {
                Ok(ttl) => ttl > 0,
                Err(KvError::LeaseNotFound) => false,
                Err(e) => return Err(e),
            },
        };
        if !alive {
            lease = kv.lease_grant(self.ttl, 0).await?.id;
            // Publish the new lease at once, so a failure below still revokes it later.
            self.state.lock().unwrap().lease = lease;
        }
        let t = kv
            .txn(crate::TxnRequest {
                compare: vec![Compare::new(
                    self.key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Create(0),
                )],
                success: vec![TxnOp::Put(PutRequest {
                    lease,
                    ..PutRequest::new(self.key.clone(), self.value.clone())
                })],
                failure: vec![TxnOp::Range(crate::RangeRequest::key(self.key.clone()))],
            })
            .await?;
        if t.succeeded {
            return Ok((true, Some(self.value.clone()), lease));
        }
        let held = t.responses.into_iter().find_map(|r| match r {
            crate::TxnOpResponse::Range(r) => r.kvs.into_iter().next(),
            _ => None,
        });
        Ok(match held {
            Some(kv) => (
                kv.lease == lease,
                Some(String::from_utf8_lossy(&kv.value).into_owned()),
                lease,
            ),
            // Deleted between compare and read: try again next step.
            None => (false, None, lease),
        })
    }

    /// Gives up: deletes the key if this candidate holds it and revokes its lease, so
    /// a standby takes over at its next step rather than after the TTL.
    pub async fn resign(&self, kv: &dyn Kv) -> KvResult<()> {
        let lease = std::mem::take(&mut *self.state.lock().unwrap()).lease;
        if lease != 0 {
            match kv.lease_revoke(lease).await {
                Ok(()) | Err(KvError::LeaseNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
