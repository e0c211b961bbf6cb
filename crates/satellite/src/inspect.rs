//! `satellite inspect …`: what an operator looks at while repair and audits work —
//! each segment of an object with its pieces, their nodes and their state; every
//! node with its reputation.

use anyhow::Context;
use clap::Subcommand;
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::repair::HealthRules;
use satellite::inspectors;
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
        #[command(flatten)]
        store: crate::store_client::StoreClient,
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
        #[command(flatten)]
        store: crate::store_client::StoreClient,
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
            store,
            access,
            config,
            json,
        } => object_health(object, store, access, config, json).await,
        InspectCommand::Nodes {
            store,
            config,
            json,
        } => nodes(store, config, json).await,
    }
}

/// `inspect nodes`.
async fn nodes(
    store: crate::store_client::StoreClient,
    config: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let storage = match config {
        Some(p) => crate::run::load(&p)?.services.storage.unwrap_or_default(),
        None => Default::default(),
    };
    let kv: Arc<dyn orbit_kv::Kv> = Arc::new(store.connect().await?);
    let rows = inspectors::nodes(kv, storage.online_window_s).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<64}  {:<24} {:>7} {:>7} {:>7} {:>6} {:>6}  state",
        "node", "address", "audit", "unknown", "online", "passed", "failed"
    );
    for row in &rows {
        let flag = |k: &str| row[k] == true;
        let mut state = Vec::new();
        state.push(if flag("online") { "online" } else { "OFFLINE" });
        if !flag("vetted") {
            state.push("vetting");
        }
        if flag("suspended") {
            state.push("SUSPENDED");
        }
        if flag("contained") {
            state.push("contained");
        }
        let mut state = state.join(", ");
        if flag("disqualified") {
            state = format!(
                "DISQUALIFIED: {}",
                row["disqualified_reason"].as_str().unwrap_or("")
            );
        }
        let f = |k: &str| row[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<64}  {:<24} {:>7.4} {:>7.4} {:>7.4} {:>6} {:>6}  {state}",
            row["id"].as_str().unwrap_or("?"),
            row["address"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("https://"),
            f("audit_score"),
            f("unknown_score"),
            f("online_score"),
            row["audits"]["success"],
            row["audits"]["failure"],
        );
    }
    Ok(())
}

/// `inspect health`.
async fn object_health(
    object: String,
    store: crate::store_client::StoreClient,
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
    let kv: Arc<dyn orbit_kv::Kv> = Arc::new(store.connect().await?);
    let project = ApiKeys::new(kv.clone()).project_of(&access.api_key).await?;
    let enc_key = uplink::crypt::encrypt_path(&access.root, bucket, key);
    let (stream, out) = inspectors::object_health(kv, &project, bucket, &enc_key, &rules).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{object}: stream {stream}, {} segment(s)", out.len());
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
