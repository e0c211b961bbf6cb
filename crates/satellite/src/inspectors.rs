//! What operators look at, as JSON: every node with its reputation and state, the
//! health of an object's segments, the repair queue, a project's limits and usage.
//! The `satellite inspect` and `satellite project` commands and the private API
//! answer with these.

use orbit_kv::Kv;
use orbit_satellite_model::accounting::{month_of, Usage};
use orbit_satellite_model::audit::ReverifyQueue;
use orbit_satellite_model::metainfo::Metainfo;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::repair::{health, HealthRules, RepairQueue};
use orbit_satellite_model::{unix_now, Error};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every node, sorted by address: online or not (within `online_window_s`), its
/// scores, audit counts, vetting, suspension, containment, disqualification.
pub async fn nodes(kv: Arc<dyn Kv>, online_window_s: u64) -> Result<Vec<Value>, Error> {
    let mut all = Nodes::new(kv.clone(), SelectionConfig::default())
        .all()
        .await?;
    all.sort_by(|a, b| a.address.cmp(&b.address).then(a.id.cmp(&b.id)));
    let contained: std::collections::HashSet<_> = ReverifyQueue::new(kv)
        .all()
        .await?
        .into_iter()
        .map(|p| p.node)
        .collect();
    let now = unix_now();
    Ok(all
        .iter()
        .map(|n| {
            let r = &n.reputation;
            json!({
                "id": n.id.to_string(),
                "address": n.address,
                "version": n.version,
                "online": n.online(now, online_window_s),
                "last_heard_s_ago": now.saturating_sub(n.last_heard()),
                "free": n.free,
                "audit_score": r.audit.score(),
                "unknown_score": r.unknown.score(),
                "online_score": r.online.score(),
                "audits": r.audits,
                "vetted": r.vetted(),
                "suspended": r.suspended(),
                "contained": contained.contains(&n.id),
                "disqualified": n.disqualified,
                "disqualified_at": r.disqualified_at,
                "disqualified_reason": r.disqualified_reason,
            })
        })
        .collect())
}

/// Each segment of the object at `enc_key` (the key as the uplink encrypted it) of
/// `project`'s `bucket`: its pieces, their nodes and state, and its repair queue
/// entry. With the object's stream id.
pub async fn object_health(
    kv: Arc<dyn Kv>,
    project: &str,
    bucket: &str,
    enc_key: &str,
    rules: &HealthRules,
) -> Result<(String, Vec<Value>), Error> {
    let (obj, segments) = Metainfo::new(kv.clone())
        .get_object(project, bucket, enc_key)
        .await?;
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let queue = RepairQueue::new(kv);
    let now = unix_now();
    let mut out = Vec::new();
    for seg in &segments {
        let ids: Vec<_> = seg.pieces.iter().map(|p| p.1).collect();
        let records = nodes.get_many(&ids).await?;
        let h = health(seg, &records, now, rules);
        let pieces: Vec<Value> = h
            .pieces
            .iter()
            .map(|(num, node, state)| {
                let rec = records.get(node);
                json!({
                    "number": num,
                    "node": node.to_string(),
                    "address": rec.map(|r| r.address.clone()),
                    "last_heard_s_ago": rec.map(|r| now.saturating_sub(r.last_heard())),
                    "disqualified": rec.map(|r| r.disqualified),
                    "state": state,
                })
            })
            .collect();
        out.push(json!({
            "index": seg.index,
            "inline": seg.inline.is_some(),
            "redundancy": seg.redundancy,
            "healthy": h.healthy,
            "retrievable": h.retrievable,
            "injured": seg.inline.is_none() && h.injured(seg),
            "lost": seg.inline.is_none() && h.lost(seg),
            "queued": queue.get(&obj.stream, seg.index).await?,
            "repairing": queue.holder(&obj.stream, seg.index).await?,
            "pieces": pieces,
        }));
    }
    Ok((orbit_identity::hex_encode(&obj.stream), out))
}

/// A project's limits and usage: stored bytes and segments as the API counts them,
/// this month's egress and payments.
pub async fn project(kv: Arc<dyn Kv>, project: &str) -> Result<Value, Error> {
    let usage = Usage::new(kv);
    let rec = usage.project(project).await?;
    let stored = usage.stored(project).await?;
    let month = month_of(unix_now());
    let m = usage.month(project, &month).await?;
    Ok(json!({
        "project": project,
        "limits": rec.limits,
        "stored_bytes": stored.bytes,
        "stored_segments": stored.segments,
        "month": month,
        "egress_bytes": m.bandwidth.get,
        "paid": m.paid,
    }))
}

/// The repair queue: how many segments wait at each count of healthy pieces, the
/// lost ones (fewer retrievable pieces than needed to rebuild), and the `limit`
/// least healthy entries.
pub async fn repair_queue(kv: Arc<dyn Kv>, limit: usize) -> Result<Value, Error> {
    let mut entries = RepairQueue::new(kv).entries().await?;
    entries.sort_by_key(|e| (e.healthy, e.inserted));
    let mut by_healthy: BTreeMap<u32, u64> = BTreeMap::new();
    for e in &entries {
        *by_healthy.entry(e.healthy).or_default() += 1;
    }
    let lost: Vec<_> = entries.iter().filter(|e| e.retrievable < e.k).collect();
    Ok(json!({
        "total": entries.len(),
        "by_healthy": by_healthy,
        "lost": lost.len(),
        "lost_segments": lost,
        "least_healthy": entries.iter().take(limit).collect::<Vec<_>>(),
    }))
}
