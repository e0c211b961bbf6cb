//! `storagenode status`: what a node holds on disk and what each trusted satellite
//! says of it (reputation, audits, suspension, disqualification). Read-only: it runs
//! beside a running node without touching its stores.

use crate::node::{NodeConfig, TrustedSatellite};
use crate::service::unix_now;
use orbit_identity::Identity;
use orbit_protocol::satellite_pb as pb;
use orbit_protocol::NodeStatsRequest;
use serde::Serialize;

/// What one satellite says of the node.
#[derive(Clone, Debug, Serialize)]
pub struct SatelliteView {
    /// The satellite's URL.
    pub url: String,
    /// Its answer, or why there is none.
    pub stats: Result<Stats, String>,
}

/// A satellite's view of the node.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Audit score (disqualified at or below the satellite's threshold).
    pub audit_score: f64,
    /// Unknown-outcome score (suspended at or below the satellite's threshold).
    pub unknown_score: f64,
    /// Online score.
    pub online_score: f64,
    /// Audits passed.
    pub audit_success: u64,
    /// Audits failed.
    pub audit_failure: u64,
    /// Audits while unreachable.
    pub audit_offline: u64,
    /// Audits that timed out.
    pub audit_contained: u64,
    /// Audits with other errors.
    pub audit_unknown: u64,
    /// Unix time (s) vetted; 0: not yet.
    pub vetted_at: u64,
    /// Unix time (s) suspended; 0: not suspended.
    pub suspended_at: u64,
    /// Unix time (s) disqualified; 0: not disqualified.
    pub disqualified_at: u64,
    /// Why it was disqualified.
    pub disqualified_reason: String,
    /// Whether it owes a reverification.
    pub contained: bool,
}

/// The node's status.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: String,
    /// Piece files stored.
    pub pieces: u64,
    /// Bytes they take.
    pub used: u64,
    /// Bytes it may store.
    pub capacity: u64,
    /// Each trusted satellite's view.
    pub satellites: Vec<SatelliteView>,
}

/// Asks `s` for the node's standing, signing as `identity`.
pub async fn stats(identity: &Identity, s: &TrustedSatellite) -> anyhow::Result<Stats> {
    let sat = s.public_key()?.id();
    let body = NodeStatsRequest::new(sat, unix_now()).encode();
    let msg = pb::SignedMsg {
        node_key: identity.public().0.to_vec(),
        signature: identity.sign(&body),
        body,
    };
    let mut c = s.client().await?;
    let r = c.node_stats(msg).await?.into_inner();
    Ok(Stats {
        audit_score: r.audit_score,
        unknown_score: r.unknown_score,
        online_score: r.online_score,
        audit_success: r.audit_success,
        audit_failure: r.audit_failure,
        audit_offline: r.audit_offline,
        audit_contained: r.audit_contained,
        audit_unknown: r.audit_unknown,
        vetted_at: r.vetted_at,
        suspended_at: r.suspended_at,
        disqualified_at: r.disqualified_at,
        disqualified_reason: r.disqualified_reason,
        contained: r.contained,
    })
}

/// Piece files under `dir` and the bytes they take, read without opening the store.
fn usage(dir: &std::path::Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            n += 1;
            bytes += f.metadata().map_or(0, |m| m.len());
        }
    }
    (n, bytes)
}

/// The status of the node configured by `config`.
pub async fn status(config: &NodeConfig) -> anyhow::Result<NodeStatus> {
    let path = config.dir.join("identity.key");
    let identity = Identity::load(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run storagenode setup first)", path.display()))?;
    let (pieces, used) = usage(&config.dir.join("storage/pieces"));
    let mut satellites = Vec::new();
    for s in &config.satellites {
        satellites.push(SatelliteView {
            url: s.url.clone(),
            stats: stats(&identity, s).await.map_err(|e| format!("{e:#}")),
        });
    }
    Ok(NodeStatus {
        id: identity.id().to_string(),
        pieces,
        used,
        capacity: config.capacity,
        satellites,
    })
}

fn when(t: u64, now: u64) -> String {
    format!("{} s ago", now.saturating_sub(t))
}

/// The status as text for a terminal.
pub fn render(s: &NodeStatus) -> String {
    let now = unix_now();
    let mut out = format!(
        "node {}\n  {} pieces, {} of {} bytes used\n",
        s.id, s.pieces, s.used, s.capacity
    );
    for v in &s.satellites {
        out += &format!("satellite {}\n", v.url);
        match &v.stats {
            Err(e) => out += &format!("  unreachable: {e}\n"),
            Ok(t) => {
                out += &format!(
                    "  audit score {:.4}: {} passed, {} failed, {} offline, {} timed out, {} unknown\n",
                    t.audit_score,
                    t.audit_success,
                    t.audit_failure,
                    t.audit_offline,
                    t.audit_contained,
                    t.audit_unknown
                );
                out += &format!(
                    "  unknown-outcome score {:.4}, online score {:.4}\n",
                    t.unknown_score, t.online_score
                );
                out += &match t.vetted_at {
                    0 => "  not vetted yet (a small share of new uploads)\n".to_string(),
                    v => format!("  vetted {}\n", when(v, now)),
                };
                if t.suspended_at != 0 {
                    out += &format!(
                        "  SUSPENDED {} (no new uploads)\n",
                        when(t.suspended_at, now)
                    );
                }
                if t.contained {
                    out += "  contained: owes the satellite a reverification\n";
                }
                if t.disqualified_at != 0 {
                    out += &format!(
                        "  DISQUALIFIED {}: {}\n",
                        when(t.disqualified_at, now),
                        t.disqualified_reason
                    );
                }
            }
        }
    }
    out
}
