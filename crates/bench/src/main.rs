//! `store-bench`: the seed's throughput test done properly. Puts and compare-and-swaps
//! per second with 1, 16, 64 and 256 concurrent clients and 256-byte values, against
//! orbit store clusters (real `satellite` processes) and Debian etcd clusters of 1, 3
//! and 5 members, on loopback, in one run, both fsyncing every commit before answering.
//! Prints one markdown table with orbit/etcd ratios and p50/p99 latencies, plus the
//! embedded in-process path.

use clap::Parser;
use orbit_kv::*;
use orbit_testkit::process::ProcCluster;
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Store throughput: orbit against etcd.
#[derive(Parser)]
struct Args {
    /// Seconds measured per cell (after a short warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    sizes: Vec<usize>,
    /// Concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Only load this running cluster (client URLs, comma separated) and print its numbers.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The satellite binary (default: beside this one).
    #[arg(long, env = "ORBIT_SATELLITE_BIN")]
    satellite: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Put,
    Cas,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Cas => "cas",
        }
    }
}

/// Throughput and latency of one cell.
#[derive(Clone, Copy, Default)]
struct Result {
    errors: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

const VALUE_BYTES: usize = 256;
/// Connections shared by the clients (as etcd's benchmark tool's --conns).
const CONNS: usize = 16;

async fn one(kv: &dyn Kv, op: Op, client: usize, i: u64, value: &[u8]) -> KvResult<()> {
    match op {
        Op::Put => {
            let key = format!("bench/{client}/{}", i % 1000);
            kv.put(PutRequest::new(key, value.to_vec()))
                .await
                .map(|_| ())
        }
        Op::Cas => {
            let key = format!("cas/{client}");
            let cur = kv.range(RangeRequest::key(key.clone())).await?;
            let rev = cur.kvs.first().map_or(0, |k| k.mod_revision);
            let t = kv
                .txn(TxnRequest {
                    compare: vec![Compare::new(
                        key.clone(),
                        CompareOp::Equal,
                        CompareTarget::Mod(rev),
                    )],
                    success: vec![TxnOp::Put(PutRequest::new(key, value.to_vec()))],
                    failure: vec![],
                })
                .await?;
            if t.succeeded {
                Ok(())
            } else {
                Err(KvError::Unavailable(
                    "CAS lost a race it should not have".into(),
                ))
            }
        }
    }
}

async fn drive(pool: &[Arc<dyn Kv>], op: Op, clients: usize, seconds: f64) -> Result {
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let kv = pool[c % pool.len()].clone();
            tokio::spawn(async move {
                let value = vec![b'x'; VALUE_BYTES];
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut i = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    i += 1;
                    if let Err(e) = one(&*kv, op, c, i, &value).await {
                        // Counted and shown in the table, never hidden.
                        if errors == 0 {
                            eprintln!("  client {c}: {e}");
                        }
                        errors += 1;
                        continue;
                    }
                    let t1 = Instant::now();
                    if t0 >= measure_from && t1 <= end {
                        lat.push((t1 - t0).as_micros() as u32);
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("client task");
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0
        }
    };
    Result {
        errors,
        per_sec: all.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

async fn pool_of(endpoints: &[String]) -> Vec<Arc<dyn Kv>> {
    let mut pool: Vec<Arc<dyn Kv>> = Vec::new();
    for _ in 0..CONNS {
        pool.push(Arc::new(
            RemoteKv::connect(endpoints).await.expect("connecting"),
        ));
    }
    pool
}

async fn run_all(pool: &[Arc<dyn Kv>], args: &Args) -> Vec<(Op, usize, Result)> {
    let mut out = Vec::new();
    for op in [Op::Put, Op::Cas] {
        for &c in &args.clients {
            let r = drive(pool, op, c, args.seconds).await;
            eprintln!(
                "  {} x{c}: {:.0}/s p50 {:.2} ms p99 {:.2} ms",
                op.name(),
                r.per_sec,
                r.p50_ms,
                r.p99_ms
            );
            out.push((op, c, r));
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.endpoints.is_empty() {
        run_all(&pool_of(&args.endpoints).await, &args).await;
        return Ok(());
    }
    let satellite = match &args.satellite {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("satellite"),
    };
    anyhow::ensure!(
        satellite.exists(),
        "{} not found: build it (cargo build --release -p satellite) or pass --satellite",
        satellite.display()
    );
    let mut rows = Vec::new();
    for &n in &args.sizes {
        eprintln!("orbit, {n} member(s)");
        let orbit = ProcCluster::start(&satellite, n, Timings::ETCD_DEFAULT).await;
        let o = run_all(&pool_of(&orbit.endpoints()).await, &args).await;
        drop(orbit);
        eprintln!("etcd, {n} member(s)");
        let etcd = EtcdCluster::start(n).await;
        let e = run_all(&pool_of(&etcd.endpoints()).await, &args).await;
        drop(etcd);
        for (a, b) in o.into_iter().zip(e) {
            rows.push((n, a.0, a.1, a.2, b.2));
        }
    }
    eprintln!("orbit embedded (in-process handle, 1 member)");
    let embedded = OrbitCluster::start(1, Timings::ETCD_DEFAULT).await;
    let handle: Arc<dyn Kv> = Arc::new(embedded.embedded(0));
    let mut embedded_rows = Vec::new();
    for op in [Op::Put, Op::Cas] {
        let r = drive(std::slice::from_ref(&handle), op, 64, args.seconds).await;
        embedded_rows.push((op, r));
    }

    println!("| members | op | clients | orbit ops/s | etcd ops/s | orbit/etcd | orbit p50 / p99 ms | etcd p50 / p99 ms | errors orbit / etcd |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (n, op, c, o, e) in &rows {
        println!(
            "| {n} | {} | {c} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} |",
            op.name(),
            o.per_sec,
            e.per_sec,
            o.per_sec / e.per_sec.max(1.0),
            o.p50_ms,
            o.p99_ms,
            e.p50_ms,
            e.p99_ms,
            o.errors,
            e.errors
        );
    }
    for (op, r) in &embedded_rows {
        let etcd = rows
            .iter()
            .find(|(n, o, c, _, _)| *n == 1 && o == op && *c == 64)
            .map(|x| x.4.per_sec);
        println!(
            "| 1 (embedded) | {} | 64 | {:.0} | {} | {} | {:.2} / {:.2} | | {} / - |",
            op.name(),
            r.per_sec,
            etcd.map_or("-".into(), |e| format!("{e:.0}")),
            etcd.map_or("-".into(), |e| format!("{:.2}x", r.per_sec / e.max(1.0))),
            r.p50_ms,
            r.p99_ms,
            r.errors
        );
    }
    println!();
    println!("Both engines acknowledge a write only after its log entry is fsynced on a quorum (etcd: default settings; orbit: group-committed fdatasync). Loopback, one machine, {} s per cell after 0.5 s warm-up, 256-byte values, {CONNS} shared connections.", args.seconds);
    Ok(())
}
