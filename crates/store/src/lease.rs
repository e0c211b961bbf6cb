//! Lease expiry, decided by the leader.
//!
//! The replicated state knows each lease's TTL; when it runs out is the leader's local
//! business, as in etcd. A new leader gives every lease a fresh full TTL (so a leader
//! change never expires a lease early), keep-alives renew the deadline on the leader,
//! and an expired lease is revoked through the log like any other write.

use crate::mvcc::Lease;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after proposing an expiry the leader waits before proposing it again.
const RETRY_EXPIRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Inner {
    /// The term in which this member leads, if it does.
    term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
}

/// The leader's lease deadlines.
#[derive(Default)]
pub struct LeaseClock {
    inner: Mutex<Inner>,
}

impl LeaseClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the deadlines up to date with the leases and this member's leadership
    /// (`leader_term`: the term it leads in, if it does); returns the leases to expire.
    pub fn tick(&self, leader_term: Option<u64>, leases: &BTreeMap<i64, Lease>) -> Vec<i64> {
        let mut g = self.lock();
        if g.term != leader_term {
            g.term = leader_term;
            g.deadlines.clear();
        }
        if leader_term.is_none() {
            return Vec::new();
        }
        let now = Instant::now();
        g.deadlines.retain(|id, _| leases.contains_key(id));
        let mut expired = Vec::new();
        for (id, lease) in leases {
            let deadline = g
                .deadlines
                .entry(*id)
                .or_insert_with(|| now + Duration::from_secs(lease.ttl as u64));
            if *deadline <= now {
                expired.push(*id);
                *deadline = now + RETRY_EXPIRY;
            }
        }
        expired
    }

    /// Renews a lease for a full TTL.
    pub fn renew(&self, id: i64, ttl: i64) {
        self.lock()
            .deadlines
            .insert(id, Instant::now() + Duration::from_secs(ttl as u64));
    }

    /// Seconds left on a lease (rounded up), or its full TTL if no deadline is set yet.
    pub fn remaining(&self, id: i64, ttl: i64) -> i64 {
        match self.lock().deadlines.get(&id) {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().div_ceil(1000) as i64
            }
            None => ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(ttls: &[(i64, i64)]) -> BTreeMap<i64, Lease> {
        ttls.iter()
            .map(|(id, ttl)| {
                (
                    *id,
                    Lease {
                        ttl: *ttl,
                        keys: Default::default(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn followers_expire_nothing() {
        let c = LeaseClock::default();
        assert!(c.tick(None, &leases(&[(1, 0)])).is_empty());
    }

    #[test]
    fn zero_ttl_expires_on_leader_and_new_term_resets() {
        let c = LeaseClock::default();
        let l = leases(&[(1, 0), (2, 100)]);
        assert_eq!(c.tick(Some(3), &l), vec![1]);
        // Proposed already: not again at once.
        assert!(c.tick(Some(3), &l).is_empty());
        assert_eq!(c.remaining(2, 100), 100);
        // A new term starts every lease afresh.
        assert_eq!(c.tick(Some(4), &l), vec![1]);
    }

    #[test]
    fn renew_extends() {
        let c = LeaseClock::default();
        let l = leases(&[(7, 5)]);
        c.tick(Some(1), &l);
        c.renew(7, 50);
        assert!(c.remaining(7, 5) > 40);
    }
}
