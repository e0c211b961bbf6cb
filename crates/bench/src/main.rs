//! `store-bench`: the seed's throughput test done properly. Puts and compare-and-swaps
//! per second with 1, 16, 64 and 256 concurrent clients and 256-byte values, against
//! orbit store clusters (real `satellite` processes) and Debian etcd clusters of 1, 3
//! and 5 members, on loopback, in one run, both fsyncing every commit before answering.
//! Prints one markdown table with orbit/etcd ratios and p50/p99 latencies, plus the
//! embedded in-process path. With `--auth`, both engines have auth enabled and the
//! clients are a user whose role covers the benchmark's keys.

use clap::Parser;
use orbit_bench::{compare_and_swap, OpFn, Stats};
use orbit_kv::*;
use orbit_testkit::process::ProcCluster;
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Auth enabled on both engines: every request carries a token and every write is
    /// permission-checked (the embedded path, which is not, is left out).
    #[arg(long)]
    auth: bool,
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

const VALUE_BYTES: usize = 256;
/// Connections shared by the clients (as etcd's benchmark tool's --conns).
const CONNS: usize = 16;

/// The load of `op` over `pool`.
fn op_fn(pool: &[Arc<dyn Kv>], op: Op) -> OpFn {
    let pool: Vec<Arc<dyn Kv>> = pool.to_vec();
    Arc::new(move |c, i| {
        let kv = pool[c % pool.len()].clone();
        Box::pin(async move {
            let value = vec![b'x'; VALUE_BYTES];
            match op {
                Op::Put => kv
                    .put(PutRequest::new(format!("bench/{c}/{}", i % 1000), value))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Op::Cas => compare_and_swap(&*kv, format!("cas/{c}"), value).await,
            }
        })
    })
}

async fn drive(pool: &[Arc<dyn Kv>], op: Op, clients: usize, seconds: f64) -> Stats {
    orbit_bench::drive(clients, seconds, op_fn(pool, op)).await
}

/// The benchmark's connections to `endpoints`; with `auth`, auth is turned on first and
/// they authenticate as a user allowed the benchmark's keys.
async fn pool_of(endpoints: &[String], auth: bool) -> Vec<Arc<dyn Kv>> {
    let user = if auth {
        let user = orbit_bench::enable_auth(endpoints, &["bench/", "cas/"])
            .await
            .expect("enabling auth");
        Some(user)
    } else {
        None
    };
    orbit_bench::pool_as(endpoints, CONNS, user).await
}

async fn run_all(pool: &[Arc<dyn Kv>], args: &Args) -> Vec<(Op, usize, Stats)> {
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
        run_all(&pool_of(&args.endpoints, false).await, &args).await;
        return Ok(());
    }
    let satellite =
        orbit_bench::satellite_binary(args.satellite.as_deref()).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for &n in &args.sizes {
        eprintln!("orbit, {n} member(s)");
        let orbit = ProcCluster::start(&satellite, n, Timings::ETCD_DEFAULT).await;
        let o = run_all(&pool_of(&orbit.endpoints(), args.auth).await, &args).await;
        drop(orbit);
        eprintln!("etcd, {n} member(s)");
        let etcd = EtcdCluster::start(n).await;
        let e = run_all(&pool_of(&etcd.endpoints(), args.auth).await, &args).await;
        drop(etcd);
        for (a, b) in o.into_iter().zip(e) {
            rows.push((n, a.0, a.1, a.2, b.2));
        }
    }
    let mut embedded_rows = Vec::new();
    let embedded = OrbitCluster::start(1, Timings::ETCD_DEFAULT).await;
    let handle: Arc<dyn Kv> = Arc::new(embedded.embedded(0));
    let ops: &[Op] = if args.auth {
        &[]
    } else {
        eprintln!("orbit embedded (in-process handle, 1 member)");
        &[Op::Put, Op::Cas]
    };
    for &op in ops {
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
    if args.auth {
        println!("Auth enabled on both: the clients are user `bench`, whose role allows readwrite on the prefixes bench/ and cas/; every request carries its token and every write is permission-checked.");
    }
    Ok(())
}
