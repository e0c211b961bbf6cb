//! `satellite inspect …`: what an operator looks at while repair and audits work —
//! each segment of an object with its pieces, their nodes and their state; every
//! node with its reputation.

use anyhow::Context;
use clap::Subcommand;
use orbit_kv::RemoteKv;
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::audit::ReverifyQueue;
use orbit_satellite_model::metainfo::Metainfo;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::repair::{health, HealthRules, RepairQueue};
use orbit_satellite_model::unix_now;
use std::path::PathBuf;
use std::sync::Arc;

/// Inspection commands.
#[derive(Subcommand)]
pub enum InspectCommand {
    /// Each segment of an object: its pieces, their nodes and state (healthy,
    /// missing, clumped), and its repair queue entry.
    Health {
        /// The object, `orbit://bucket/key`.
        object: String,
        /// Client URLs of the store (comma-separated).
        #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// An access grant to the object's project: the satellite only knows the key
        /// as the uplink encrypted it, so the grant encrypts it the same way.
        #[arg(long, env = "ORBIT_ACCESS", hide_env_values = true)]
        access: String,
        /// The satellite's configuration, for `[storage]`'s online window and network
        /// rule (defaults without it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every node: online or not, its reputation (audit, unknown-outcome and online
    /// scores), audit counts, vetting, suspension, containment, disqualification.
    Nodes {
        /// Client URLs of the store (comma-separated).
        #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// The satellite's configuration, for `[storage]`'s online window (defaults
        /// without it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an inspection command.
pub async fn run(c: InspectCommand) -> anyhow::Result<()> {
    match c {
        InspectCommand::Health {
            object,
            endpoints,
            access,
            config,
            json,
        } => object_health(object, endpoints, access, config, json).await,
        InspectCommand::Nodes {
            endpoints,
            config,
            json,
        } => nodes(endpoints, config, json).await,
    }
}

/// `inspect nodes`.
async fn nodes(endpoints: Vec<String>, config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let storage = match config {
        Some(p) => crate::run::load(&p)?.services.storage.unwrap_or_default(),
        None => Default::default(),
    };
    let kv: Arc<dyn orbit_kv::Kv> = Arc::new(RemoteKv::connect(&endpoints).await?);
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
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|n| {
            let r = &n.reputation;
            serde_json::json!({
                "id": n.id.to_string(),
                "address": n.address,
                "version": n.version,
                "online": n.online(now, storage.online_window_s),
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
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<64}  {:<24} {:>7} {:>7} {:>7} {:>6} {:>6}  state",
        "node", "address", "audit", "unknown", "online", "passed", "failed"
    );
    for (n, row) in all.iter().zip(&rows) {
        let mut state = Vec::new();
        state.push(if row["online"] == true {
            "online"
        } else {
            "OFFLINE"
        });
        if !n.reputation.vetted() {
            state.push("vetting");
        }
        if n.reputation.suspended() {
            state.push("SUSPENDED");
        }
        if row["contained"] == true {
            state.push("contained");
        }
        let mut state = state.join(", ");
        if n.disqualified {
            state = format!("DISQUALIFIED: {}", n.reputation.disqualified_reason);
        }
        println!(
            "{:<64}  {:<24} {:>7.4} {:>7.4} {:>7.4} {:>6} {:>6}  {state}",
            n.id.to_string(),
            n.address.trim_start_matches("http://"),
            n.reputation.audit.score(),
            n.reputation.unknown.score(),
            n.reputation.online.score(),
            n.reputation.audits.success,
            n.reputation.audits.failure,
        );
    }
    Ok(())
}

/// `inspect health`.
async fn object_health(
    object: String,
    endpoints: Vec<String>,
    access: String,
    config: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let (bucket, key) = object
        .strip_prefix("orbit://")
        .and_then(|r| r.split_once('/'))
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .with_context(|| format!("{object:?} is not orbit://bucket/key"))?;
    let access = uplink::project::Access::parse(&access)?;
    let storage = match config {
        Some(p) => crate::run::load(&p)?.services.storage.unwrap_or_default(),
        None => Default::default(),
    };
    let rules = HealthRules {
        online_window_s: storage.online_window_s,
        distinct_networks: storage.distinct_networks,
    };
    let kv: Arc<dyn orbit_kv::Kv> = Arc::new(RemoteKv::connect(&endpoints).await?);
    let project = ApiKeys::new(kv.clone()).project_of(&access.api_key).await?;
    let enc_key = uplink::crypt::encrypt_path(&access.root, bucket, key);
    let (obj, segments) = Metainfo::new(kv.clone())
        .get_object(&project, bucket, &enc_key)
        .await?;
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let queue = RepairQueue::new(kv.clone());
    let now = unix_now();
    let mut out = Vec::new();
    for seg in &segments {
        let ids: Vec<_> = seg.pieces.iter().map(|p| p.1).collect();
        let records = nodes.get_many(&ids).await?;
        let h = health(seg, &records, now, &rules);
        let pieces: Vec<serde_json::Value> = h
            .pieces
            .iter()
            .map(|(num, node, state)| {
                let rec = records.get(node);
                serde_json::json!({
                    "number": num,
                    "node": node.to_string(),
                    "address": rec.map(|r| r.address.clone()),
                    "last_heard_s_ago": rec.map(|r| now.saturating_sub(r.last_heard())),
                    "disqualified": rec.map(|r| r.disqualified),
                    "state": state,
                })
            })
            .collect();
        out.push(serde_json::json!({
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
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{object}: stream {}, {} segment(s)",
        orbit_identity::hex_encode(&obj.stream),
        segments.len()
    );
    for s in &out {
        let r = &s["redundancy"];
        if s["inline"] == true {
            println!("segment {}: inline (no pieces)", s["index"]);
            continue;
        }
        let mut flags = Vec::new();
        if s["lost"] == true {
            flags.push("LOST".to_string());
        } else if s["injured"] == true {
            flags.push("injured".to_string());
        }
        if !s["queued"].is_null() {
            flags.push(format!("queued, {} attempt(s)", s["queued"]["attempts"]));
        }
        if let Some(h) = s["repairing"].as_str() {
            flags.push(format!("being repaired by {h}"));
        }
        println!(
            "segment {}: {} healthy, {} retrievable (k {}, repair {}, success {}, total {}){}",
            s["index"],
            s["healthy"],
            s["retrievable"],
            r["k"],
            r["repair"],
            r["success"],
            r["total"],
            if flags.is_empty() {
                String::new()
            } else {
                format!(" — {}", flags.join(", "))
            }
        );
        for p in s["pieces"].as_array().into_iter().flatten() {
            println!(
                "  piece {:>3}  {:<8}  node {}  {}",
                p["number"],
                p["state"].as_str().unwrap_or("?"),
                p["node"].as_str().unwrap_or("?"),
                p["address"].as_str().unwrap_or("(unknown node)"),
            );
        }
    }
    Ok(())
}
