//! `satellite run <process>`: the satellite's replicable processes.

use anyhow::Context;
use clap::{Args, Subcommand};
use orbit_identity::Identity;
use orbit_replica::{Mode, Replica};
use orbit_version::{Checked, Checker, Rules, VersionServer};
use orbit_worker::Interval;
use satellite::accounting::AccountingProcess;
use satellite::api::ApiProcess;
use satellite::audit::AuditProcess;
use satellite::config::{SatelliteConfig, Services};
use satellite::elected::Election;
use satellite::gc::GcProcess;
use satellite::repair::RepairProcess;
use satellite::segment_loop::LoopProcess;
use satellite::uptime::UptimeProcess;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The processes.
#[derive(Subcommand)]
pub enum Process {
    /// The API replica: the storage network and payments APIs, its store cluster
    /// manager and its status/health endpoint.
    Api(ApiArgs),
    /// The segment loop and its observers; any number may run, one is elected to run
    /// passes and the others stand by.
    Loop(ReplicaArgs),
    /// Repair workers: they rebuild the segments the loop queued on new nodes; any
    /// number may run.
    Repair(ReplicaArgs),
    /// Contacts storage nodes not heard from lately and records whether they
    /// answered; any number may run, one is elected to contact.
    Uptime(ReplicaArgs),
    /// Audit workers: they challenge nodes for verified slices of the pieces the loop
    /// sampled and keep their reputations; any number may run.
    Audit(ReplicaArgs),
    /// Garbage collection: hands each node the newest filter of the pieces it should
    /// hold; any number may run, one is elected to send.
    Gc(ReplicaArgs),
    /// Accounting: rolls settled orders, payments and tallies up into the rollups
    /// that reports and project limits read; any number may run.
    Accounting(ReplicaArgs),
    /// The version server: tells every process that checks in whether its version
    /// may run, from `[version.server]`. It needs no store.
    Version(VersionArgs),
    /// The operators' HTTP API: inspectors (nodes, object health, the repair queue)
    /// and admin (limits, key revocation, disqualification, trash restores) behind a
    /// bearer token; any number may run.
    PrivateApi(ReplicaArgs),
    /// Every process (api, loop, repair, uptime, audit, gc, accounting) in this one
    /// OS process, on one replica: for a satellite on one box.
    All(ApiArgs),
}

/// Flags of `run version`.
#[derive(Args)]
pub struct VersionArgs {
    /// The TOML configuration holding `[version.server]`.
    #[arg(long, env = "ORBIT_CONFIG")]
    config: PathBuf,
    /// Listen address (overrides `[version.server] addr`).
    #[arg(long, env = "ORBIT_VERSION_ADDR")]
    addr: Option<String>,
    /// Metrics address (overrides `[version.server] debug_addr`).
    #[arg(long, env = "ORBIT_VERSION_DEBUG_ADDR")]
    debug_addr: Option<String>,
}

/// Flags every process takes; each overrides the configuration file.
#[derive(Args)]
pub struct ReplicaArgs {
    /// The replica's TOML configuration (see docs/replicas.md).
    #[arg(long, env = "ORBIT_CONFIG")]
    config: PathBuf,
    /// This replica's id, or `auto`: a random id of a client-only replica (no row,
    /// never a store member), for workers an autoscaler starts and stops.
    #[arg(long, env = "ORBIT_REPLICA_ID")]
    replica_id: Option<ReplicaId>,
    /// A replica without a row in the table: it never runs a store member.
    #[arg(long, env = "ORBIT_CLIENT_ONLY")]
    client_only: bool,
    /// external, fixed or incremental.
    #[arg(long, env = "ORBIT_MODE")]
    mode: Option<Mode>,
    /// Data directory.
    #[arg(long, env = "ORBIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Status endpoint address.
    #[arg(long, env = "ORBIT_STATUS_ADDR")]
    status_addr: Option<String>,
    /// Mode incremental: let this replica create the cluster although it is not the
    /// designated one (when that one is gone for good). Never on two replicas.
    #[arg(long, env = "ORBIT_BOOTSTRAP")]
    bootstrap: bool,
    /// Development only: start without a version server's approval (as
    /// `[version] unchecked = true`).
    #[arg(long, env = "ORBIT_VERSION_UNCHECKED")]
    version_unchecked: bool,
}

/// `--replica-id`: a number, or `auto`.
#[derive(Clone, Copy, Debug)]
pub enum ReplicaId {
    /// This id.
    Id(u64),
    /// A random id, client-only.
    Auto,
}

impl std::str::FromStr for ReplicaId {
    type Err = String;

    fn from_str(s: &str) -> Result<ReplicaId, String> {
        match s {
            "auto" => Ok(ReplicaId::Auto),
            n => n
                .parse()
                .map(ReplicaId::Id)
                .map_err(|_| format!("{n:?} is neither a replica id (a number) nor auto")),
        }
    }
}

/// Flags of `run api`.
#[derive(Args)]
pub struct ApiArgs {
    #[command(flatten)]
    replica: ReplicaArgs,
    /// Address of the public gRPC API (storage network, payments).
    #[arg(long, env = "ORBIT_API_ADDR")]
    api_addr: Option<String>,
}

/// Runs a process until SIGINT or SIGTERM.
pub async fn run(p: Process) -> anyhow::Result<()> {
    match p {
        Process::Api(a) => api(a).await,
        Process::Loop(a) => segment_loop(a).await,
        Process::Repair(a) => repair(a).await,
        Process::Uptime(a) => uptime(a).await,
        Process::Audit(a) => audit(a).await,
        Process::Gc(a) => gc(a).await,
        Process::Accounting(a) => accounting(a).await,
        Process::Version(a) => version(a).await,
        Process::All(a) => all(a).await,
        Process::PrivateApi(a) => private_api(a).await,
    }
}

/// The configuration with the command line's overrides, the version check of each of
/// `processes` (nothing starts unless every one is allowed), and the replica started
/// on it, with the periodic re-checks.
async fn start_replica(
    a: ReplicaArgs,
    processes: &[&str],
) -> anyhow::Result<(Arc<Replica>, Services, Vec<Checker>)> {
    let SatelliteConfig {
        replica: mut config,
        services,
    } = load(&a.config)?;
    match a.replica_id {
        Some(ReplicaId::Id(id)) => config.replica_id = id,
        // Far above any table's ids; 2^62 ids make a collision between live workers
        // negligible.
        Some(ReplicaId::Auto) => {
            config.replica_id = (1 << 62) | (rand::random::<u64>() >> 2);
            config.client_only = true;
        }
        None => {}
    }
    config.client_only |= a.client_only;
    // The cluster token is a secret: from the environment (a Secret), never a flag.
    if let Ok(t) = std::env::var("ORBIT_TOKEN") {
        if !t.is_empty() {
            config.token = t;
        }
    }
    if let Some(m) = a.mode {
        config.mode = m;
    }
    if let Some(d) = a.data_dir {
        config.data_dir = d;
    }
    if let Some(s) = a.status_addr {
        config.status_addr = s;
    }
    config.bootstrap |= a.bootstrap;
    config
        .validate()
        .with_context(|| format!("in {}", a.config.display()))?;
    let mut version = services.version.clone().unwrap_or_default();
    version.unchecked |= a.version_unchecked;
    let instance = format!("replica-{}", config.replica_id);
    let mut checkers = Vec::new();
    for process in processes {
        let checked = orbit_version::check(&version, process, orbit_version::VERSION, &instance)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if checked.unchecked {
            tracing::warn!("{}: {}", checked.process, checked.message);
        } else {
            tracing::info!("{}", checked.message);
        }
        checkers.push(Checker::new(version.clone(), &instance, checked));
    }
    let replica = Replica::start(config).await?;
    let c = checkers.clone();
    let every = Interval::every(checkers[0].interval());
    replica.workers().spawn("version-check", every, move || {
        let c = c.clone();
        orbit_worker::job(async move {
            let mut refused = Vec::new();
            for checker in &c {
                if let Err(e) = checker.recheck().await {
                    refused.push(e);
                }
            }
            match refused.is_empty() {
                true => Ok(()),
                false => Err(refused.join("; ")),
            }
        })
    });
    let c = checkers.clone();
    replica.add_status(
        "version",
        Arc::new(move || match &c[..] {
            [one] => serde_json::json!(one.last()),
            many => serde_json::json!(many
                .iter()
                .map(|k| (k.last().process.clone(), k.last()))
                .collect::<std::collections::BTreeMap<_, _>>()),
        }),
    );
    Ok((replica, services, checkers))
}

/// The name a process's campaigns and claims carry.
fn process_name(replica: &Replica) -> String {
    format!("replica-{}", replica.config().replica_id)
}

fn announce(what: &str, replica: &Replica) {
    println!(
        "{what} {} status on http://{}/status",
        process_name(replica),
        replica.status_addr()
    );
}

/// How a process hands its work over when it stops, beyond stopping its workers.
enum Handover {
    /// Elected: resign first, so a standby takes over at once.
    Resign(Election),
    /// Nothing held: stopping the workers is all.
    None,
    /// Claims under a lease: revoke it once the workers stopped, so other processes
    /// take the jobs at once.
    Revoke(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

/// What a process builder returns: its `/status` section and its handover.
type Built = (orbit_replica::StatusSection, Handover);

/// Runs a process of the replica `a` until SIGINT or SIGTERM: `build` composes it
/// (given the satellite's identity when `signs`), its status is the `/status`
/// section `what`.
async fn serve(
    a: ReplicaArgs,
    what: &str,
    signs: bool,
    build: impl FnOnce(
        &Services,
        Arc<dyn orbit_kv::Kv>,
        Option<Identity>,
        &str,
        &orbit_worker::Group,
    ) -> Built,
) -> anyhow::Result<()> {
    let (replica, services, _) = start_replica(a, &[what]).await?;
    let identity = match signs {
        true => Some(satellite_identity(&replica, &services)?),
        false => None,
    };
    let name = process_name(&replica);
    let (status, handover) = build(&services, replica.kv(), identity, &name, replica.workers());
    replica.add_status(what, status);
    announce(what, &replica);
    crate::until_stopped().await?;
    match handover {
        Handover::Resign(election) => {
            election.resign(replica.workers()).await;
            replica.shutdown().await;
        }
        Handover::Revoke(revoke) => {
            // Running jobs stop with the workers; then their claims go.
            replica.shutdown().await;
            revoke.await;
        }
        Handover::None => replica.shutdown().await,
    }
    tracing::info!("replica stopped");
    Ok(())
}

async fn segment_loop(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(a, "loop", false, |services, kv, _, name, workers| {
        let p = Arc::new(LoopProcess::build(services, kv, name, workers));
        let election = p.election.clone();
        (status_of(&p, |p| p.status()), Handover::Resign(election))
    })
    .await
}

async fn uptime(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(a, "uptime", false, |services, kv, _, name, workers| {
        let p = Arc::new(UptimeProcess::build(services, kv, name, workers));
        let election = p.election.clone();
        (status_of(&p, |p| p.status()), Handover::Resign(election))
    })
    .await
}

async fn gc(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(a, "gc", true, |services, kv, identity, name, workers| {
        let identity = identity.expect("gc signs filters");
        let p = Arc::new(GcProcess::build(services, kv, identity, name, workers));
        let election = p.election.clone();
        (status_of(&p, |p| p.status()), Handover::Resign(election))
    })
    .await
}

async fn accounting(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(a, "accounting", false, |services, kv, _, _, workers| {
        let p = Arc::new(AccountingProcess::build(services, kv, workers));
        (status_of(&p, |p| p.status()), Handover::None)
    })
    .await
}

async fn repair(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(
        a,
        "repair",
        true,
        |services, kv, identity, name, workers| {
            let identity = identity.expect("repair signs order limits");
            let p = Arc::new(RepairProcess::build(services, kv, identity, name, workers));
            let r = p.repairer.clone();
            let revoke = Box::pin(async move { r.revoke_lease().await });
            (status_of(&p, |p| p.status()), Handover::Revoke(revoke))
        },
    )
    .await
}

async fn audit(a: ReplicaArgs) -> anyhow::Result<()> {
    serve(a, "audit", true, |services, kv, identity, name, workers| {
        let identity = identity.expect("audit signs order limits");
        let p = Arc::new(AuditProcess::build(services, kv, identity, name, workers));
        let a = p.auditor.clone();
        let revoke = Box::pin(async move { a.revoke_lease().await });
        (status_of(&p, |p| p.status()), Handover::Revoke(revoke))
    })
    .await
}

/// The satellite's identity (from `[storage] identity`, relative to the data dir):
/// every process that signs order limits must load the same one.
fn satellite_identity(replica: &Replica, services: &Services) -> anyhow::Result<Identity> {
    let st = services.storage.clone().unwrap_or_default();
    let dir = &replica.config().data_dir;
    // A relative path may lead out of the data dir, which must exist to resolve it.
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(&st.identity);
    let identity = Identity::load_or_create(&path)
        .with_context(|| format!("satellite identity {}", path.display()))?;
    println!(
        "satellite {} (key {})",
        identity.id(),
        orbit_identity::hex_encode(&identity.public().0)
    );
    Ok(identity)
}

/// The `api` process built, serving, on `replica` (and the console, when configured):
/// nodes below the storage-node minimum that `checker` hears of get no uploads.
async fn start_api(
    replica: &Replica,
    services: &Services,
    identity: Identity,
    checker: &Checker,
) -> anyhow::Result<Vec<satellite::api::Serving>> {
    let identity_key = identity.public();
    let process = ApiProcess::build(services, replica.kv(), identity, replica.workers()).await?;
    if let Some(api) = &process.storage {
        let nodes = api.nodes.clone();
        let apply = move |c: &Checked| nodes.set_minimum_version(c.minimum_of("storagenode"));
        apply(&checker.last());
        checker.on_verdict(apply);
    }
    let mut serving = Vec::new();
    let key = orbit_identity::hex_encode(&identity_key.0);
    let mut grants_for = None;
    if process.serves() {
        let s = process.serve().await?;
        println!("API on {}", s.url);
        grants_for = Some(orbit_console::SatelliteInfo {
            url: s.url.clone(),
            key: key.clone(),
        });
        serving.push(s);
    }
    if let Some(section) = &services.console {
        let prices = services.accounting.clone().unwrap_or_default().prices;
        let data_dir = &replica.config().data_dir;
        let escrow = services.payments.as_ref().map(|p| p.escrow);
        // Without an API here, only a configured URL tells where grants point.
        let grants_for = grants_for.or_else(|| {
            (!section.satellite_url.is_empty()).then(|| orbit_console::SatelliteInfo {
                url: section.satellite_url.clone(),
                key: key.clone(),
            })
        });
        let s =
            satellite::console::serve(section, replica.kv(), data_dir, prices, escrow, grants_for)
                .await?;
        println!("console on {}", s.url);
        serving.push(s);
    }
    Ok(serving)
}

async fn api(a: ApiArgs) -> anyhow::Result<()> {
    let (replica, mut services, checkers) = start_replica(a.replica, &["api"]).await?;
    if let Some(addr) = a.api_addr {
        services.api.addr = addr;
    }
    // Even payments alone need it: the API's TLS certificate is made from its key.
    let identity = satellite_identity(&replica, &services)?;
    let serving = start_api(&replica, &services, identity, &checkers[0]).await?;
    println!(
        "replica {} ({:?} mode{}) status on http://{}/status",
        replica.config().replica_id,
        replica.config().mode,
        if replica.store_node().is_some() {
            ", runs a store member"
        } else {
            ""
        },
        replica.status_addr()
    );
    crate::until_stopped().await?;
    // Outside in: no new requests, then the background work (the services' workers
    // before the replica's own), then the store.
    for s in serving {
        s.stop(Duration::from_secs(5)).await;
    }
    tracing::info!("API stopped");
    replica.shutdown().await;
    tracing::info!("replica stopped");
    Ok(())
}

async fn private_api(a: ReplicaArgs) -> anyhow::Result<()> {
    let (replica, services, _) = start_replica(a, &["private-api"]).await?;
    let identity = satellite_identity(&replica, &services)?;
    let mut section = services.private_api.clone().unwrap_or_default();
    // A secret store (a Kubernetes Secret, say) hands the token over in the
    // environment rather than in the shared configuration file.
    if let Ok(t) = std::env::var("ORBIT_PRIVATE_API_TOKEN") {
        section.token = t;
    }
    let storage = services.storage.clone().unwrap_or_default();
    let serving = satellite::private_api::serve(&section, replica.kv(), identity, storage).await?;
    println!("private API on {}", serving.url);
    let url = serving.url.clone();
    replica.add_status(
        "private_api",
        Arc::new(move || serde_json::json!({ "url": url })),
    );
    announce("private-api", &replica);
    crate::until_stopped().await?;
    serving.stop(Duration::from_secs(5)).await;
    replica.shutdown().await;
    tracing::info!("replica stopped");
    Ok(())
}

/// A process's `/status` section.
fn status_of<P: Send + Sync + 'static>(
    p: &Arc<P>,
    status: fn(&P) -> serde_json::Value,
) -> orbit_replica::StatusSection {
    let p = p.clone();
    Arc::new(move || status(&p))
}

/// The processes `run all` runs, in the order they stop in.
const ALL: &[&str] = &[
    "api",
    "loop",
    "repair",
    "uptime",
    "audit",
    "gc",
    "accounting",
];

async fn all(a: ApiArgs) -> anyhow::Result<()> {
    let (replica, mut services, checkers) = start_replica(a.replica, ALL).await?;
    if let Some(addr) = a.api_addr {
        services.api.addr = addr;
    }
    let identity = satellite_identity(&replica, &services)?;
    let serving = start_api(&replica, &services, identity.clone(), &checkers[0]).await?;
    let (kv, name, workers) = (replica.kv(), process_name(&replica), replica.workers());
    let lp = Arc::new(LoopProcess::build(&services, kv.clone(), &name, workers));
    let rp = Arc::new(RepairProcess::build(
        &services,
        kv.clone(),
        identity.clone(),
        &name,
        workers,
    ));
    let up = Arc::new(UptimeProcess::build(&services, kv.clone(), &name, workers));
    let ap = Arc::new(AuditProcess::build(
        &services,
        kv.clone(),
        identity.clone(),
        &name,
        workers,
    ));
    let gp = Arc::new(GcProcess::build(
        &services,
        kv.clone(),
        identity,
        &name,
        workers,
    ));
    let cp = Arc::new(AccountingProcess::build(&services, kv, workers));
    let sections = [
        ("loop", status_of(&lp, LoopProcess::status)),
        ("repair", status_of(&rp, RepairProcess::status)),
        ("uptime", status_of(&up, UptimeProcess::status)),
        ("audit", status_of(&ap, AuditProcess::status)),
        ("gc", status_of(&gp, GcProcess::status)),
        ("accounting", status_of(&cp, AccountingProcess::status)),
    ];
    for (what, s) in sections {
        replica.add_status(what, s);
    }
    announce("all", &replica);
    crate::until_stopped().await?;
    // Outside in, as each process alone: no new requests; the elected hand over;
    // the workers stop; then the claims go and the store last.
    for s in serving {
        s.stop(Duration::from_secs(5)).await;
    }
    for e in [&lp.election, &up.election, &gp.election] {
        e.resign(replica.workers()).await;
    }
    replica.shutdown().await;
    rp.repairer.revoke_lease().await;
    ap.auditor.revoke_lease().await;
    tracing::info!("replica stopped");
    Ok(())
}

async fn version(a: VersionArgs) -> anyhow::Result<()> {
    let services = load(&a.config)?.services;
    let section = services.version.unwrap_or_default().server;
    let rules = Rules::new(&section).with_context(|| format!("in {}", a.config.display()))?;
    let addr = a.addr.unwrap_or(section.addr);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("version server address {addr}"))?;
    println!("version server on http://{}", listener.local_addr()?);
    let (stop_metrics, stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = a.debug_addr.or(section.debug_addr.clone()) {
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("version server metrics address {addr}"))?;
        println!("metrics on http://{}/metrics", l.local_addr()?);
        orbit_telemetry::serve(l, async {
            let _ = stopped.await;
        });
    }
    tonic::transport::Server::builder()
        .layer(orbit_telemetry::RpcLayer)
        .add_service(VersionServer::new(rules).service())
        .serve_with_incoming_shutdown(orbit_store::no_delay(listener), async {
            let _ = crate::until_stopped().await;
        })
        .await?;
    let _ = stop_metrics.send(());
    tracing::info!("version server stopped");
    Ok(())
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> anyhow::Result<SatelliteConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SatelliteConfig::parse(&text).with_context(|| format!("in {}", path.display()))
}
