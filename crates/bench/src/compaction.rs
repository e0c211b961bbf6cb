//! `compaction-bench`: what automatic compaction buys under a heartbeat-like load.
//! One member of orbit (a real `satellite storage init` process) and one of Debian's
//! etcd, each with automatic compaction off and on, take the same 1,000,000
//! overwrites of 10,000 keys from 64 clients. Then each is left idle long enough for
//! its compactor to reach the end of the load, and then takes 12,000 more overwrites
//! from a single client (so orbit takes a snapshot of the compacted state; etcd gets
//! the same writes).
//! Prints one markdown table: resident memory, the engine's reported database size,
//! the on-disk snapshot (orbit) or bbolt file (etcd), the data dir, and the history
//! still readable.

use clap::Parser;
use orbit_kv::*;
use orbit_testkit::process::ProcCluster;
use orbit_testkit::{EtcdCluster, Timings};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Memory and size with and without automatic compaction: orbit against etcd.
#[derive(Parser)]
struct Args {
    /// Overwrites in the load.
    #[arg(long, default_value_t = 1_000_000)]
    writes: u64,
    /// Distinct keys overwritten.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes (a node record or heartbeat is of this order).
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Periodic retention of the compacting runs, as both engines parse it.
    #[arg(long, default_value = "30s")]
    retention: String,
    /// The satellite binary (default: beside this one).
    #[arg(long, env = "ORBIT_SATELLITE_BIN")]
    satellite: Option<PathBuf>,
}

/// Connections the clients share.
const CONNS: usize = 16;

/// What one run measured.
struct Row {
    engine: &'static str,
    compaction: String,
    load_s: f64,
    rss: u64,
    db_size: i64,
    file: u64,
    data_dir: u64,
    revision: i64,
    oldest_readable: i64,
}

/// Writes `total` overwrites spread over `keys` keys from `clients` clients.
async fn load(
    pool: &[Arc<dyn Kv>],
    args: &Args,
    clients: usize,
    total: u64,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let kv = pool[c % pool.len()].clone();
            let next = next.clone();
            let keys = args.keys;
            let value = vec![b'h'; args.value_bytes];
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, KvError>(());
                    }
                    kv.put(PutRequest::new(
                        format!("hb/{:05}", i % keys),
                        value.clone(),
                    ))
                    .await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The lowest revision a read is still served at: everything below was compacted.
async fn oldest_readable(kv: &dyn Kv, current: i64) -> i64 {
    let (mut lo, mut hi) = (1i64, current);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut r = RangeRequest::key("hb/00000");
        r.revision = mid;
        match kv.range(r).await {
            Ok(_) => hi = mid,
            Err(_) => lo = mid + 1,
        }
    }
    lo
}

/// Resident memory of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Total size of the files under `dir`, and the size of the first file named `name`.
fn sizes(dir: &Path, name: &str) -> (u64, u64) {
    let (mut total, mut found) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
                if e.file_name() == name && found == 0 {
                    found = meta.len();
                }
            }
        }
    }
    (total, found)
}

/// Writes after the idle: every key once more, plus a snapshot interval's worth.
fn tail_writes() -> u64 {
    orbit_store::config::DEFAULT_SNAPSHOT_ENTRIES + 2_000
}

/// When the first file named `name` under `dir` was last written.
fn modified(dir: &Path, name: &str) -> Option<std::time::SystemTime> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let meta = e.metadata().ok()?;
        if meta.is_dir() {
            if let Some(m) = modified(&e.path(), name) {
                return Some(m);
            }
        } else if e.file_name() == name {
            return meta.modified().ok();
        }
    }
    None
}

/// Seconds an idle member needs for its periodic compactor to reach what was written
/// before it went idle: the retention plus one sampling step, and some slack.
fn settle_secs(retention: &str) -> anyhow::Result<u64> {
    match orbit_store::AutoCompaction::parse("periodic", retention).map_err(anyhow::Error::msg)? {
        orbit_store::AutoCompaction::Periodic(d) => Ok(2 * d.as_secs() + 5),
        _ => anyhow::bail!("retention {retention:?} turns compaction off"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    engine: &'static str,
    compaction: String,
    endpoints: &[String],
    pid: u32,
    dir: &Path,
    file_name: &str,
    settle: u64,
    args: &Args,
) -> anyhow::Result<Row> {
    let pool = orbit_bench::pool_of(endpoints, CONNS).await;
    eprintln!(
        "{engine}, compaction {compaction}: {} overwrites",
        args.writes
    );
    let load_s = load(&pool, args, args.clients, args.writes).await?;
    eprintln!(
        "  {:.0} writes/s; idle {settle} s, then {} overwrites from one client",
        args.writes as f64 / load_s,
        tail_writes()
    );
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let idle_end = std::time::SystemTime::now();
    // One client, so every write is its own log entry (concurrent writes share
    // entries): enough entries for orbit to take a snapshot of the compacted state.
    load(&pool, args, 1, tail_writes()).await?;
    // orbit snapshots every so many log entries, in the background: wait for the one
    // the last overwrites brought, so the file measured holds the compacted state.
    if file_name == "snapshot" {
        let deadline = Instant::now() + Duration::from_secs(30);
        while modified(dir, file_name).is_none_or(|m| m < idle_end) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kv = RemoteKv::connect(endpoints).await?;
    let status = kv.client().status().await?;
    let revision = kv.range(RangeRequest::key("hb/00000")).await?.revision;
    let (data_dir, file) = sizes(dir, file_name);
    Ok(Row {
        engine,
        compaction,
        load_s,
        rss: rss(pid),
        db_size: status.db_size(),
        file,
        data_dir,
        revision,
        oldest_readable: oldest_readable(&kv, revision).await,
    })
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let satellite =
        orbit_bench::satellite_binary(args.satellite.as_deref()).map_err(anyhow::Error::msg)?;
    let settle = settle_secs(&args.retention)?;
    let on = format!("periodic {}", args.retention);
    let mut rows = Vec::new();
    for compacting in [false, true] {
        let flags: Vec<&str> = if compacting {
            vec![
                "--auto-compaction-mode",
                "periodic",
                "--auto-compaction-retention",
                &args.retention,
            ]
        } else {
            vec!["--auto-compaction-mode", "off"]
        };
        let label = if compacting { on.clone() } else { "off".into() };
        // orbit's default snapshot cadence, not the test clusters' frequent one.
        let mut orbit_flags = flags.clone();
        let entries = orbit_store::config::DEFAULT_SNAPSHOT_ENTRIES.to_string();
        orbit_flags.extend(["--snapshot-entries", &entries]);
        let orbit =
            ProcCluster::start_with(&satellite, 1, Timings::ETCD_DEFAULT, &orbit_flags).await;
        let pid = orbit.procs[0].as_ref().map_or(0, |c| c.id());
        let dir = orbit.dir.path().join("m0");
        rows.push(
            measure(
                "orbit",
                label.clone(),
                &orbit.endpoints(),
                pid,
                &dir,
                "snapshot",
                settle,
                &args,
            )
            .await?,
        );
        drop(orbit);
        // etcd 3.4 is off unless a mode is given; `off` is not a mode it knows.
        let etcd = EtcdCluster::start_with(1, if compacting { &flags } else { &[] }).await;
        rows.push(
            measure(
                "etcd",
                label,
                &etcd.endpoints(),
                etcd.pids()[0],
                &etcd.data_dir(0),
                "db",
                settle,
                &args,
            )
            .await?,
        );
        drop(etcd);
    }
    println!("| engine | auto-compaction | load writes/s | RSS MiB | reported db size MiB | snapshot (orbit) / bbolt db (etcd) MiB | data dir MiB | revisions readable |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.engine,
            r.compaction,
            args.writes as f64 / r.load_s,
            mib(r.rss),
            mib(r.db_size.max(0) as u64),
            mib(r.file),
            mib(r.data_dir),
            r.revision - r.oldest_readable + 1
        );
    }
    for engine in ["orbit", "etcd"] {
        let of = |c: &str| {
            rows.iter()
                .find(|r| r.engine == engine && r.compaction == c)
        };
        if let (Some(off), Some(on)) = (of("off"), of(&on)) {
            println!(
                "\n{engine}: with compaction, RSS {:.2}x, snapshot/db file {:.2}x, data dir {:.2}x of without.",
                on.rss as f64 / off.rss.max(1) as f64,
                on.file as f64 / off.file.max(1) as f64,
                on.data_dir as f64 / off.data_dir.max(1) as f64,
            );
        }
    }
    println!(
        "\n{} overwrites of {} keys ({}-byte values) from {} clients over {CONNS} connections, one member each, fsync on every commit; then {settle} s idle and {} more overwrites from one client (so orbit snapshots the compacted state) before measuring. etcd's bbolt file does not shrink without a defragment; its reported db size is the file size.",
        args.writes,
        args.keys,
        args.value_bytes,
        args.clients,
        tail_writes()
    );
    Ok(())
}
