//! Node uptime: nodes not heard from within a window (no check-in, no contact) are
//! pinged, and whether they answered — with a signature by their own key over a fresh
//! challenge — is recorded on their node record. A node is online while its last
//! check-in or successful contact is within the online window; the repair checker
//! counts the pieces on the others as missing.

use futures::stream::{self, StreamExt};
use orbit_kv::Kv;
use orbit_satellite_model::nodes::{NodeRecord, Nodes, SelectionConfig};
use orbit_satellite_model::reputation::ReputationConfig;
use orbit_satellite_model::unix_now;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `[uptime]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UptimeSection {
    /// Seconds between rounds of contacts.
    pub interval_s: u64,
    /// Nodes not heard from within this many seconds are contacted (keep it below
    /// `[storage] online_window_s`, so a node that answers never drops offline).
    pub stale_s: u64,
    /// Contacts in flight at once.
    pub concurrency: usize,
    /// A contact not answered within this many seconds failed.
    pub timeout_s: u64,
    /// TTL of the leader lease, seconds (one uptime process contacts at a time).
    pub leader_ttl_s: i64,
}

impl Default for UptimeSection {
    fn default() -> Self {
        UptimeSection {
            interval_s: 60,
            stale_s: 600,
            concurrency: 16,
            timeout_s: 10,
            leader_ttl_s: 10,
        }
    }
}

/// One round's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Round {
    /// Unix time (s) it ran.
    pub at: u64,
    /// Nodes in the table.
    pub nodes: usize,
    /// Nodes contacted (stale, not disqualified).
    pub contacted: usize,
    /// Of those, nodes that answered.
    pub reached: usize,
    /// Of those, nodes that did not (one line each).
    pub failed: Vec<String>,
}

/// The uptime service.
pub struct Uptime {
    nodes: Nodes,
    section: UptimeSection,
    reputation: ReputationConfig,
    last: Mutex<Option<Round>>,
}

impl Uptime {
    /// Uptime over the node table in `kv`; contacts move online scores by `reputation`.
    pub fn new(kv: Arc<dyn Kv>, section: UptimeSection, reputation: ReputationConfig) -> Uptime {
        Uptime {
            nodes: Nodes::new(kv, SelectionConfig::default()),
            section,
            reputation,
            last: Mutex::new(None),
        }
    }

    /// The section it runs by.
    pub fn section(&self) -> &UptimeSection {
        &self.section
    }

    /// The last round's counts.
    pub fn last_round(&self) -> Option<Round> {
        self.last.lock().unwrap().clone()
    }

    /// One round: contacts every stale node and records the results.
    pub async fn round(&self) -> Result<Round, String> {
        let all = self
            .nodes
            .all()
            .await
            .map_err(|e| format!("reading the node table: {e}"))?;
        let now = unix_now();
        let stale: Vec<NodeRecord> = all
            .iter()
            .filter(|n| {
                !n.disqualified && now.saturating_sub(n.last_heard()) > self.section.stale_s
            })
            .cloned()
            .collect();
        let timeout = Duration::from_secs(self.section.timeout_s.max(1));
        let results: Vec<(NodeRecord, Result<(), String>)> = stream::iter(stale)
            .map(|n| async move {
                let r = match tokio::time::timeout(
                    timeout,
                    orbit_protocol::client::ping(&n.address, &n.key),
                )
                .await
                {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (n, r)
            })
            .buffer_unordered(self.section.concurrency.max(1))
            .collect()
            .await;
        let mut round = Round {
            at: now,
            nodes: all.len(),
            contacted: results.len(),
            ..Round::default()
        };
        let unreached: std::collections::HashSet<_> = results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| n.id)
            .collect();
        let mut states: std::collections::BTreeMap<&'static str, i64> =
            NODE_STATES.iter().map(|s| (*s, 0)).collect();
        for n in &all {
            *states
                .entry(node_state(n, !unreached.contains(&n.id)))
                .or_default() += 1;
        }
        for (state, count) in states {
            METRICS.get_or_create(&[("state", state.into())]).set(count);
        }
        for (n, r) in results {
            let ok = r.is_ok();
            if let Err(why) = r {
                tracing::debug!(node = %n.id, address = %n.address, %why, "node did not answer");
                round.failed.push(format!("{}: {why}", n.id));
            } else {
                round.reached += 1;
            }
            let rec = self
                .nodes
                .record_contact(&n.id, ok, unix_now(), &self.reputation)
                .await
                .map_err(|e| format!("recording the contact with {}: {e}", n.id))?;
            // Said once when a node stops answering, not every round after.
            if rec.contact_failures == 1 {
                tracing::info!(node = %n.id, address = %n.address, "node stopped answering");
            }
        }
        *self.last.lock().unwrap() = Some(round.clone());
        Ok(round)
    }
}

/// The states nodes are counted in, each node in the first that applies.
const NODE_STATES: [&str; 5] = ["disqualified", "suspended", "offline", "unvetted", "vetted"];

/// A node's state for the node counts: `reached` when it was heard from recently or
/// answered this round.
fn node_state(n: &NodeRecord, reached: bool) -> &'static str {
    if n.disqualified {
        "disqualified"
    } else if n.reputation.suspended() {
        "suspended"
    } else if !reached {
        "offline"
    } else if !n.reputation.vetted() {
        "unvetted"
    } else {
        "vetted"
    }
}

static METRICS: std::sync::LazyLock<orbit_telemetry::Gauges<orbit_telemetry::Labels<1>>> =
    std::sync::LazyLock::new(|| {
        orbit_telemetry::register(
            "nodes",
            "Storage nodes by state (disqualified, suspended, offline, unvetted, vetted) as of the uptime process's last round",
            Default::default(),
        )
    });
