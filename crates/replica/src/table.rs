//! The cluster configuration table of seed 000, kept in the store: each replica
//! heartbeats its row, and a replica whose lease has expired is dead.
//!
//! Two keys per replica under `/orbit/replicas/<token>/`:
//! - `live/<id>`: attached to the replica's lease; it vanishes when the lease expires,
//!   which is what "dead" means — decided by the store's leader, not by comparing
//!   clocks across machines.
//! - `last/<id>`: the last heartbeat (time and whether the replica runs a store member),
//!   without a lease, so a dead replica is still listed with when it was last seen.

use orbit_kv::{Kv, KvError, KvResult, PutRequest, RangeRequest};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key a replica's health check reads (linearizably; it need not exist): inside
/// orbit's key space, so a store user limited to `/orbit/` may read it.
pub const HEALTH_KEY: &str = "/orbit/health";

/// Key prefix of one cluster's table.
pub fn table_prefix(token: &str) -> String {
    format!("/orbit/replicas/{token}/")
}

/// A replica's heartbeat record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Format version of this record.
    pub v: u32,
    /// Replica id.
    pub id: u64,
    /// Milliseconds since the Unix epoch, by the replica's clock (informative only).
    pub at_ms: u64,
    /// Whether the replica runs a store member.
    pub store_node: bool,
}

/// One row of the table as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRow {
    /// The last heartbeat.
    pub last: Heartbeat,
    /// Whether its lease is alive.
    pub live: bool,
}

/// How many store members `live` replicas should run: 1, 2 → 1; 3, 4 → 3; 5 or more
/// → 5, never more than `cap` (rounded down to odd, at least 1).
pub fn number_of_nodes(live: usize, cap: usize) -> usize {
    let want = match live {
        0..=2 => 1,
        3 | 4 => 3,
        _ => 5,
    };
    let cap = if cap.is_multiple_of(2) {
        cap.saturating_sub(1)
    } else {
        cap
    };
    want.min(cap.max(1))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes one heartbeat under `lease`.
async fn beat(kv: &dyn Kv, token: &str, hb: &Heartbeat, lease: i64) -> KvResult<()> {
    let prefix = table_prefix(token);
    let body = serde_json::to_vec(hb).expect("heartbeat serializes");
    kv.put(PutRequest {
        lease,
        ..PutRequest::new(format!("{prefix}live/{}", hb.id), body.clone())
    })
    .await?;
    kv.put(PutRequest::new(format!("{prefix}last/{}", hb.id), body))
        .await?;
    Ok(())
}

/// Heartbeats this replica's row every `interval` under a lease of `ttl` seconds
/// (with `store_node` as it is at each beat), as the `replica-heartbeat` worker of
/// `workers`, re-granting the lease if it was lost (the replica was away longer than
/// the TTL).
pub fn heartbeat_worker(
    workers: &orbit_worker::Group,
    kv: Arc<dyn Kv>,
    token: String,
    id: u64,
    store_node: Arc<AtomicBool>,
    interval: Duration,
    ttl: i64,
) -> orbit_worker::Handle {
    let lease = Arc::new(AtomicI64::new(0));
    let every = orbit_worker::Interval::every(interval).starting_now();
    workers.spawn("replica-heartbeat", every, move || {
        let (kv, token, store_node, lease) =
            (kv.clone(), token.clone(), store_node.clone(), lease.clone());
        orbit_worker::job(async move {
            let hb = Heartbeat {
                v: 1,
                id,
                at_ms: now_ms(),
                store_node: store_node.load(Ordering::Relaxed),
            };
            let res: KvResult<()> = async {
                let mut l = lease.load(Ordering::Relaxed);
                if l == 0 {
                    l = kv.lease_grant(ttl, 0).await?.id;
                    lease.store(l, Ordering::Relaxed);
                    tracing::info!(
                        lease = l,
                        "heartbeating this replica's row under a new lease"
                    );
                } else {
                    kv.lease_keep_alive(l).await?;
                }
                beat(&*kv, &token, &hb, l).await
            }
            .await;
            match res {
                Ok(()) => Ok(()),
                Err(KvError::LeaseNotFound) => {
                    lease.store(0, Ordering::Relaxed);
                    Err("the heartbeat lease ran out; the next beat grants a new one".into())
                }
                Err(e) => Err(format!("heartbeat: {e}")),
            }
        })
    })
}

/// Reads the table: every replica that ever heartbeat, live or dead, by id.
pub async fn read_table(kv: &dyn Kv, token: &str) -> KvResult<Vec<TableRow>> {
    let prefix = table_prefix(token);
    let all = kv.range(RangeRequest::prefix(prefix.clone())).await?;
    let mut rows: Vec<TableRow> = Vec::new();
    let mut live = std::collections::BTreeSet::new();
    for kv in &all.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(id) = rest.strip_prefix("live/") {
            if let Ok(id) = id.parse::<u64>() {
                live.insert(id);
            }
        } else if rest.starts_with("last/") {
            if let Ok(hb) = serde_json::from_slice::<Heartbeat>(&kv.value) {
                rows.push(TableRow {
                    last: hb,
                    live: false,
                });
            }
        }
    }
    for r in &mut rows {
        r.live = live.contains(&r.last.id);
    }
    rows.sort_by_key(|r| r.last.id);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_of_nodes_follows_the_seed() {
        let got: Vec<usize> = (1..=7).map(|n| number_of_nodes(n, 5)).collect();
        assert_eq!(got, vec![1, 1, 3, 3, 5, 5, 5]);
        assert_eq!(number_of_nodes(0, 5), 1);
        // The cap bounds it, rounded down to odd.
        assert_eq!(number_of_nodes(9, 3), 3);
        assert_eq!(number_of_nodes(9, 4), 3);
        assert_eq!(number_of_nodes(9, 1), 1);
        assert_eq!(number_of_nodes(9, 0), 1);
    }
}
