//! `satellite storage …`: run a store member (the seed's command-line cluster
//! creation) and report on a cluster.

use anyhow::Context;
use clap::{Args, Subcommand};
use orbit_kv::{Kv, RemoteKv};
use orbit_store::{parse_initial_cluster, ClusterState, StoreConfig, StoreNode};
use std::path::PathBuf;

/// Store subcommands.
#[derive(Subcommand)]
pub enum StorageCommand {
    /// Run a store member; the same command on the same data dir rejoins its cluster.
    Init(Box<InitArgs>),
    /// Print members, roles, leader, revision and health of a cluster.
    Status(StatusArgs),
    /// Recovery after quorum is lost for good: make a STOPPED member the only member
    /// of its cluster (as etcd's --force-new-cluster). Run it on the member with the
    /// most advanced log, start that member again, then add new members to it.
    ForceNewCluster(ForceArgs),
    /// Backups: take one from a running cluster (as `etcdctl snapshot save`, which
    /// also works), describe one, make new members' data dirs from one.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

/// `storage snapshot` subcommands, as etcdctl's.
#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Take a backup of a running cluster into FILE.
    Save(SaveArgs),
    /// Print a backup's revision, key count and size (after checking it whole).
    Status(SnapshotStatusArgs),
    /// Make a new member's data dir from a backup; run it once per member of the new
    /// cluster with the same --initial-cluster and token, then start each member with
    /// `storage init --data-dir DIR` (its other flags as usual).
    Restore(RestoreArgs),
}

/// Flags of `storage snapshot save`.
#[derive(Args)]
pub struct SaveArgs {
    /// Where to write it (replaced only once the whole backup is in and checks out).
    file: PathBuf,
    #[command(flatten)]
    members: Members,
}

/// Flags of `storage snapshot status`.
#[derive(Args)]
pub struct SnapshotStatusArgs {
    /// The backup.
    file: PathBuf,
    /// `table` or `json`.
    #[arg(long, short = 'w', default_value = "table")]
    write_out: String,
}

/// Flags of `storage snapshot restore`, named as etcdctl's.
#[derive(Args)]
pub struct RestoreArgs {
    /// The backup.
    file: PathBuf,
    /// This member's name.
    #[arg(long, default_value = "default")]
    name: String,
    /// Every member of the new cluster, name1=peerURL1,name2=peerURL2,… (default:
    /// this member alone on --initial-advertise-peer-urls).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// The new cluster's token (as `storage init --token`).
    #[arg(long, alias = "token", default_value = "orbit")]
    initial_cluster_token: String,
    /// This member's peer URL (if given with --initial-cluster, it must be this
    /// member's entry there); default http://127.0.0.1:2380.
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    /// The data dir to make (default: NAME.orbit); it must not exist or be empty.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Flags of `storage force-new-cluster`.
#[derive(Args)]
pub struct ForceArgs {
    /// The stopped member's data directory.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Flags of `storage init`, named as etcd's.
#[derive(Args)]
pub struct InitArgs {
    /// Member name, unique in the cluster.
    #[arg(long, env = "ORBIT_STORE_NAME", default_value = "default")]
    name: String,
    /// Cluster token; members of one cluster share it.
    #[arg(long, env = "ORBIT_STORE_TOKEN", default_value = "orbit")]
    token: String,
    /// URL to serve the etcd API on.
    #[arg(
        long,
        env = "ORBIT_STORE_CLIENT_URL",
        default_value = "http://127.0.0.1:2379"
    )]
    client_url: String,
    /// URL to serve Raft on.
    #[arg(
        long,
        env = "ORBIT_STORE_PEER_URL",
        default_value = "http://127.0.0.1:2380"
    )]
    peer_url: String,
    /// Initial members, name1=peerURL1,name2=peerURL2,… (default: this member alone).
    #[arg(long, env = "ORBIT_STORE_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    /// `new` to form the cluster, `existing` to join one this member was added to.
    #[arg(long, env = "ORBIT_STORE_INITIAL_CLUSTER_STATE", default_value = "new")]
    initial_cluster_state: ClusterState,
    /// Data directory (default: NAME.orbit in the working directory).
    #[arg(long, env = "ORBIT_STORE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URLs to serve the member's Prometheus metrics on (`GET /metrics`), comma
    /// separated, as etcd's flag.
    #[arg(long, env = "ORBIT_STORE_LISTEN_METRICS_URLS", value_delimiter = ',')]
    listen_metrics_urls: Vec<String>,
    #[command(flatten)]
    tls: crate::store_client::MemberTlsArgs,
    /// Raft heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Raft election timeout, milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_ms: u64,
    /// Backend quota in bytes (0: none).
    #[arg(long, default_value_t = orbit_store::config::DEFAULT_QUOTA_BYTES)]
    quota_bytes: u64,
    /// Log entries between snapshots.
    #[arg(long, default_value_t = orbit_store::config::DEFAULT_SNAPSHOT_ENTRIES)]
    snapshot_entries: u64,
    /// Automatic compaction: `periodic` (keep a time span of history), `revision`
    /// (keep a number of revisions) or `off`.
    #[arg(
        long,
        env = "ORBIT_STORE_AUTO_COMPACTION_MODE",
        default_value = "periodic"
    )]
    auto_compaction_mode: String,
    /// What automatic compaction keeps: a duration in periodic mode (`1h`, `30m`, or a
    /// bare number of hours, as etcd), a revision count in revision mode; 0 turns it off.
    #[arg(
        long,
        env = "ORBIT_STORE_AUTO_COMPACTION_RETENTION",
        default_value = "1h"
    )]
    auto_compaction_retention: String,
    /// Auth token kind (etcd's `--auth-token`): `simple`, orbit's signed tokens that
    /// every member accepts. etcd's `jwt` with key files is not supported.
    #[arg(long, env = "ORBIT_STORE_AUTH_TOKEN", default_value = "simple")]
    auth_token: String,
    /// How long an auth token lasts, seconds (etcd's `--auth-token-ttl`).
    #[arg(long, env = "ORBIT_STORE_AUTH_TOKEN_TTL", default_value_t = orbit_store::auth::DEFAULT_TOKEN_TTL_S)]
    auth_token_ttl: u64,
}

/// Flags of `storage status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    members: Members,
    /// Cluster token whose replica table to show.
    #[arg(long, env = "ORBIT_STORE_TOKEN", default_value = "orbit")]
    token: String,
}

/// The members a command asks, and the TLS it reaches them with.
#[derive(Args)]
pub struct Members {
    /// Client URLs of members, comma separated.
    #[arg(
        long,
        env = "ORBIT_STORE_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[command(flatten)]
    tls: crate::store_client::TlsArgs,
}

/// Runs a store subcommand.
pub async fn run(cmd: StorageCommand) -> anyhow::Result<()> {
    match cmd {
        StorageCommand::Init(a) => init(*a).await,
        StorageCommand::Status(a) => status(a).await,
        StorageCommand::Snapshot { command } => snapshot(command).await,
        StorageCommand::ForceNewCluster(a) => {
            let r = orbit_store::recovery::force_new_cluster(&a.data_dir)
                .await
                .context("forcing a new cluster")?;
            println!(
                "member {:x} is now the only member of its cluster (was one of {} voters); start it again with its usual command",
                r.id,
                r.old_voters.len()
            );
            Ok(())
        }
    }
}

async fn init(a: InitArgs) -> anyhow::Result<()> {
    let initial_cluster = match &a.initial_cluster {
        Some(s) => parse_initial_cluster(s)?,
        None => vec![(a.name.clone(), a.peer_url.clone())],
    };
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.orbit", a.name)));
    anyhow::ensure!(
        a.auth_token == "simple",
        "--auth-token {}: only `simple` is supported (orbit's tokens are signed and checked by every member; etcd's jwt key options are not)",
        a.auth_token
    );
    anyhow::ensure!(
        a.auth_token_ttl > 0,
        "--auth-token-ttl must be at least 1 second"
    );
    let config = StoreConfig {
        auth_token_ttl_s: a.auth_token_ttl,
        initial_cluster,
        initial_cluster_state: a.initial_cluster_state,
        token: a.token,
        heartbeat_ms: a.heartbeat_ms,
        election_ms: a.election_ms,
        quota_bytes: a.quota_bytes,
        snapshot_entries: a.snapshot_entries,
        auto_compaction: orbit_store::AutoCompaction::parse(
            &a.auto_compaction_mode,
            &a.auto_compaction_retention,
        )
        .map_err(anyhow::Error::msg)?,
        tls: a.tls.settings(),
        ..StoreConfig::single(&a.name, data_dir, &a.client_url, &a.peer_url)
    };
    let data_dir = config.data_dir.clone();
    let mut metrics = Vec::new();
    for url in &a.listen_metrics_urls {
        anyhow::ensure!(
            !url.starts_with("https://"),
            "metrics URL {url}: metrics are served as plain HTTP; use http:// on an internal address"
        );
        let addr = orbit_store::config::url_addr(url)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("metrics URL {url}"))?;
        metrics.push(listener);
    }
    let node = StoreNode::start(config)
        .await
        .context("starting the store member")?;
    for listener in metrics {
        println!("metrics on http://{}/metrics", listener.local_addr()?);
        let mut stop = node.shutdown_signal();
        orbit_telemetry::serve(listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    }
    let peer_scheme = if node.config().tls.peer_tls() {
        "https"
    } else {
        "http"
    };
    println!(
        "orbit store member {:x} serving the etcd API on {} (peers: {peer_scheme}://{}), data in {}",
        node.id(),
        node.advertised_client_url(),
        node.peer_addr(),
        data_dir.display()
    );
    let tls_flags = if node.config().tls.client_tls() {
        " --cacert CA --cert CERT --key KEY"
    } else {
        ""
    };
    println!(
        "try: ETCDCTL_API=3 etcdctl --endpoints={}{tls_flags} put hello world",
        node.advertised_client_url()
    );
    crate::until_stopped().await?;
    node.shutdown().await;
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    // Ask the endpoints one at a time: a status report must work while some are down.
    let mut found = None;
    for ep in &a.members.endpoints {
        let attempt = async {
            let kv = a.members.tls.connect(std::slice::from_ref(ep)).await?;
            let members = kv.members().await?;
            Ok::<_, anyhow::Error>((kv, members))
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await {
            Ok(Ok(x)) => {
                found = Some(x);
                break;
            }
            Ok(Err(e)) => eprintln!("{ep}: {e}"),
            Err(_) => eprintln!("{ep}: no answer in 5 s"),
        }
    }
    let (kv, members) = found.context("no endpoint answered; is the cluster running?")?;
    let mut client = kv.client();
    let mut leader = 0;
    let mut rows = Vec::new();
    for m in &members {
        let (health, revision, role) = match m.client_urls.first() {
            None => ("unstarted".to_string(), String::new(), String::new()),
            Some(url) => match status_of(url, &a.members.tls).await {
                Ok((s, rev)) => {
                    leader = s.leader();
                    let role = if s.0.is_learner {
                        "learner"
                    } else if s.leader() == m.id {
                        "leader"
                    } else {
                        "follower"
                    };
                    ("healthy".to_string(), rev.to_string(), role.to_string())
                }
                Err(e) => (format!("unhealthy: {e}"), String::new(), String::new()),
            },
        };
        rows.push((m, role, revision, health));
    }
    let rev = client
        .get(orbit_replica::table::HEALTH_KEY, None)
        .await
        .ok()
        .and_then(|r| r.header().map(|h| h.revision()));
    println!(
        "{:<16} {:<12} {:<9} {:<28} {:<28} {:>9}  HEALTH",
        "ID", "NAME", "ROLE", "CLIENT URL", "PEER URL", "REVISION"
    );
    for (m, role, revision, health) in rows {
        println!(
            "{:<16x} {:<12} {:<9} {:<28} {:<28} {:>9}  {}",
            m.id,
            m.name,
            role,
            m.client_urls.first().map(String::as_str).unwrap_or("-"),
            m.peer_urls.first().map(String::as_str).unwrap_or("-"),
            revision,
            health
        );
    }
    println!(
        "leader: {}  cluster revision: {}",
        if leader == 0 {
            "none".to_string()
        } else {
            format!("{leader:x}")
        },
        rev.map(|r| r.to_string())
            .unwrap_or_else(|| "unavailable".into())
    );
    print_replica_table(&kv, &a.token).await;
    Ok(())
}

/// The replicas' heartbeat table, if replicas of this token use the cluster.
async fn print_replica_table(kv: &RemoteKv, token: &str) {
    let rows = match orbit_replica::table::read_table(kv, token).await {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => return,
        Err(e) => {
            println!("replica table: unavailable ({e})");
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!();
    println!(
        "{:<8} {:<6} {:<11} LAST HEARTBEAT",
        "REPLICA", "STATE", "STORE NODE"
    );
    for r in rows {
        println!(
            "{:<8} {:<6} {:<11} {:.1} s ago",
            r.last.id,
            if r.live { "live" } else { "dead" },
            if r.last.store_node { "yes" } else { "no" },
            now.saturating_sub(r.last.at_ms) as f64 / 1000.0
        );
    }
}

async fn status_of(
    url: &str,
    tls: &crate::store_client::TlsArgs,
) -> anyhow::Result<(etcd_client::StatusResponse, i64)> {
    let mut opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(2))
        .with_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = tls.client_config()?.filter(|_| url.starts_with("https://")) {
        opts = opts.with_tls(tls);
    }
    if let Some(user) = tls.credentials()? {
        opts = opts.with_user(user.user, user.password);
    }
    let mut c = etcd_client::Client::connect([url], Some(opts)).await?;
    let s = c.status().await?;
    // Healthy means it can serve a linearizable read, as etcdctl endpoint health
    // checks; a user not allowed that key still saw the read served.
    match c.get(orbit_replica::table::HEALTH_KEY, None).await {
        Err(etcd_client::Error::GRpcStatus(e)) if e.code() == tonic::Code::PermissionDenied => {}
        other => {
            other?;
        }
    }
    let rev = s.header().map(|h| h.revision()).unwrap_or_default();
    Ok((s, rev))
}

async fn snapshot(cmd: SnapshotCommand) -> anyhow::Result<()> {
    use orbit_store::backup;
    match cmd {
        SnapshotCommand::Save(a) => {
            let kv = a.members.tls.connect(&a.members.endpoints).await?;
            let bytes = kv.snapshot().await.context("taking the backup")?;
            let h = backup::header(&bytes).context("the backup the store sent")?;
            let part = a.file.with_extension("part");
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&part)
                    .with_context(|| format!("creating {}", part.display()))?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            std::fs::rename(&part, &a.file)?;
            println!(
                "Snapshot saved at {} (revision {}, {} keys, {} bytes)",
                a.file.display(),
                h.revision,
                h.keys,
                bytes.len()
            );
        }
        SnapshotCommand::Status(a) => {
            let bytes = std::fs::read(&a.file).with_context(|| a.file.display().to_string())?;
            let h = backup::header(&bytes).with_context(|| a.file.display().to_string())?;
            let hash = orbit_identity::hex_encode(&bytes[bytes.len() - 32..bytes.len() - 24]);
            match a.write_out.as_str() {
                "json" => println!(
                    "{}",
                    serde_json::json!({
                        "hash": hash, "revision": h.revision, "totalKey": h.keys,
                        "totalSize": bytes.len(), "compactRevision": h.compact_revision,
                        "versions": h.versions, "leases": h.leases, "taken": h.taken,
                    })
                ),
                "table" => {
                    println!("| HASH | REVISION | TOTAL KEYS | TOTAL SIZE | LEASES |");
                    println!(
                        "| {hash} | {} | {} | {} | {} |",
                        h.revision,
                        h.keys,
                        bytes.len(),
                        h.leases
                    );
                }
                w => anyhow::bail!("--write-out {w:?}: table or json"),
            }
        }
        SnapshotCommand::Restore(a) => {
            let initial_cluster = match (&a.initial_cluster, &a.initial_advertise_peer_urls) {
                (Some(c), url) => {
                    let members = parse_initial_cluster(c)?;
                    let mine = members.iter().find(|(n, _)| *n == a.name);
                    if let (Some((_, listed)), Some(url)) = (mine, url) {
                        anyhow::ensure!(
                            listed == url,
                            "--initial-advertise-peer-urls {url} is not {}'s URL in --initial-cluster ({listed})",
                            a.name
                        );
                    }
                    members
                }
                (None, url) => vec![(
                    a.name.clone(),
                    url.clone()
                        .unwrap_or_else(|| "http://127.0.0.1:2380".to_string()),
                )],
            };
            let bytes = std::fs::read(&a.file).with_context(|| a.file.display().to_string())?;
            let data_dir = a
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.orbit", a.name)));
            let h = backup::restore(
                &bytes,
                &backup::Restore {
                    name: a.name.clone(),
                    initial_cluster,
                    token: a.initial_cluster_token.clone(),
                    data_dir: data_dir.clone(),
                },
            )
            .with_context(|| format!("restoring {}", a.file.display()))?;
            println!(
                "restored revision {} ({} keys, {} leases) into {} as member {}; start it with storage init --data-dir {}",
                h.revision,
                h.keys,
                h.leases,
                data_dir.display(),
                a.name,
                data_dir.display()
            );
        }
    }
    Ok(())
}
