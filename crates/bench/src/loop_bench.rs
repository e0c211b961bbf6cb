//! `loop-bench`: how fast a segment-loop pass (with the repair checker) reads every
//! segment, beside a bare range scan of the same keys in the same run. Segments are
//! seeded straight into the store; every node is online, so the checker judges every
//! segment and queues none. Runs against orbit's store in process (`EmbeddedKv`),
//! orbit's store through the etcd protocol (`RemoteKv`), and Debian's etcd. Prints one
//! markdown table.

/// The allocator the orbit binaries use (see their `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use futures::stream::{self, StreamExt};
use orbit_identity::Identity;
use orbit_kv::{Kv, PutRequest, RangeRequest, RemoteKv, Scan, TxnOp, TxnRequest};
use orbit_protocol::PieceId;
use orbit_repair::Checker;
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::{Redundancy, Segment};
use orbit_satellite_model::nodes::NodeRecord;
use orbit_satellite_model::repair::HealthRules;
use orbit_satellite_model::unix_now;
use orbit_segment_loop::{Active, LoopSection, SegmentLoop};
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::sync::Arc;
use std::time::Instant;

/// Segment-loop passes against a bare scan.
#[derive(Parser)]
struct Args {
    /// Segments seeded.
    #[arg(long, default_value_t = 1_000_000)]
    segments: u64,
    /// Nodes the pieces are spread over.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Ranges of the passes measured.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    ranges: Vec<usize>,
    /// Segments per page.
    #[arg(long, default_value_t = 2500)]
    batch: usize,
    /// Skip Debian's etcd.
    #[arg(long)]
    no_etcd: bool,
}

/// Writes per seeding transaction (etcd's default `--max-txn-ops`).
const TXN_OPS: usize = 128;

fn records(args: &Args) -> (Vec<NodeRecord>, Vec<(String, Vec<u8>)>) {
    let now = unix_now();
    let nodes: Vec<NodeRecord> = (0..args.nodes)
        .map(|i| {
            let key = Identity::generate().public();
            NodeRecord {
                id: key.id(),
                key,
                // One /24 each: no piece is clumped, no segment queued.
                address: format!("http://10.{}.{}.1:7777", i / 250, i % 250),
                free: 1 << 40,
                version: "bench".into(),
                // Online for the whole run.
                last_seen: now + 24 * 3600,
                disqualified: false,
                last_contact: 0,
                last_contact_failure: 0,
                contact_failures: 0,
                reputation: Default::default(),
            }
        })
        .collect();
    let nodes_kv = nodes
        .iter()
        .map(|n| (keys::node(&n.id), orbit_kv::record::encode(n)))
        .collect();
    (nodes, nodes_kv)
}

/// Segment `i`: 10 pieces (k 4, repair 6, success 8, total 10) on distinct nodes.
fn segment(i: u64, nodes: &[NodeRecord]) -> (String, Vec<u8>) {
    let mut stream = [0u8; 16];
    // Spread over the key space as random stream ids are.
    stream[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    stream[8..].copy_from_slice(&i.to_be_bytes());
    let seg = Segment {
        index: 0,
        encrypted_size: 64 << 20,
        inline: None,
        redundancy: Redundancy {
            k: 4,
            repair: 6,
            success: 8,
            total: 10,
        },
        root: PieceId([7; 32]),
        piece_size: 16 << 20,
        created: 0,
        pieces: (0..10u16)
            .map(|p| (p, nodes[(i as usize + p as usize * 7) % nodes.len()].id))
            .collect(),
    };
    (keys::segment(&stream, 0), orbit_kv::record::encode(&seg))
}

async fn seed(kv: &dyn Kv, args: &Args) -> anyhow::Result<f64> {
    let (nodes, node_kvs) = records(args);
    let t = Instant::now();
    for chunk in node_kvs.chunks(TXN_OPS) {
        put_all(kv, chunk.to_vec()).await?;
    }
    let batches: Vec<(u64, u64)> = (0..args.segments)
        .step_by(TXN_OPS)
        .map(|s| (s, (s + TXN_OPS as u64).min(args.segments)))
        .collect();
    let nodes = &nodes;
    let results: Vec<anyhow::Result<()>> = stream::iter(batches)
        .map(|(a, b)| async move { put_all(kv, (a..b).map(|i| segment(i, nodes)).collect()).await })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(t.elapsed().as_secs_f64())
}

async fn put_all(kv: &dyn Kv, kvs: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let txn = TxnRequest {
        compare: Vec::new(),
        success: kvs
            .into_iter()
            .map(|(k, v)| TxnOp::Put(PutRequest::new(k, v)))
            .collect(),
        failure: Vec::new(),
    };
    kv.txn(txn).await?;
    Ok(())
}

/// A bare scan of every segment key and value, one reader, counted and chunked as a
/// one-range pass reads them (so neither pays for counting more than the other):
/// segments/s.
async fn scan(kv: &dyn Kv, batch: usize) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let live = kv
        .range(RangeRequest {
            count_only: true,
            ..RangeRequest::prefix(keys::SEGMENTS)
        })
        .await?
        .count as u64;
    let chunks = orbit_segment_loop::chunks(live, 1, batch);
    let mut n = 0u64;
    for c in 0..chunks {
        let (start, end) = keys::segment_range(c, chunks);
        let mut scan = Scan::new(kv, start, end, batch as i64);
        while let Some(page) = scan.next_page().await? {
            n += page.len() as u64;
        }
    }
    anyhow::ensure!(n == live, "scanned {n} of {live} segments");
    Ok((n, t.elapsed().as_secs_f64()))
}

/// One pass with the repair checker: segments/s.
async fn pass(kv: Arc<dyn Kv>, ranges: usize, batch: usize) -> anyhow::Result<(u64, f64)> {
    let rules = HealthRules {
        online_window_s: 3600,
        distinct_networks: true,
    };
    let mut l = SegmentLoop::new(
        kv.clone(),
        LoopSection {
            ranges,
            batch,
            ..LoopSection::default()
        },
    );
    l.add(Arc::new(Checker::new(kv, rules)));
    let active: Active = Arc::new(|| true);
    let t = Instant::now();
    let report = l.run_pass(active).await;
    let secs = t.elapsed().as_secs_f64();
    if let Some(p) = report.problems() {
        anyhow::bail!("pass: {p}");
    }
    Ok((report.segments, secs))
}

struct Row {
    engine: &'static str,
    scan_rate: f64,
    passes: Vec<(usize, f64)>,
}

async fn measure(engine: &'static str, kv: Arc<dyn Kv>, args: &Args) -> anyhow::Result<Row> {
    let seeded = seed(&*kv, args).await?;
    eprintln!(
        "{engine}: {} segments seeded in {seeded:.1} s",
        args.segments
    );
    let (n, s) = scan(&*kv, args.batch).await?;
    anyhow::ensure!(n == args.segments, "{engine}: scan saw {n} segments");
    eprintln!("{engine}: bare scan in {s:.2} s");
    let mut passes = Vec::new();
    for &r in &args.ranges {
        let (n, secs) = pass(kv.clone(), r, args.batch).await?;
        anyhow::ensure!(n == args.segments, "{engine}: a pass saw {n} segments");
        eprintln!("{engine}: pass with {r} range(s) in {secs:.2} s");
        passes.push((r, n as f64 / secs));
    }
    // The scan again after the passes, and the better of the two (the first may pay
    // for a cold cache the passes then enjoy).
    let (_, s2) = scan(&*kv, args.batch).await?;
    Ok(Row {
        engine,
        scan_rate: n as f64 / s.min(s2),
        passes,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    {
        let orbit = OrbitCluster::start(1, Timings::FAST).await;
        rows.push(measure("orbit, embedded", Arc::new(orbit.embedded(0)), &args).await?);
    }
    {
        let orbit = OrbitCluster::start(1, Timings::FAST).await;
        let remote = RemoteKv::connect(&orbit.endpoints()).await?;
        rows.push(measure("orbit, etcd protocol", Arc::new(remote), &args).await?);
    }
    if !args.no_etcd {
        let etcd = EtcdCluster::start_with(1, &["--quota-backend-bytes", "8589934592"]).await;
        rows.push(
            measure(
                "etcd 3.4, etcd protocol",
                Arc::new(etcd.remote().await),
                &args,
            )
            .await?,
        );
    }
    println!(
        "\n{} segments (10 pieces each) over {} nodes, repair checker on, pages of {}\n",
        args.segments, args.nodes, args.batch
    );
    print!("| store | bare scan seg/s |");
    for r in &args.ranges {
        print!(" pass, {r} range(s) seg/s | ×scan |");
    }
    println!();
    print!("|---|---:|");
    for _ in &args.ranges {
        print!("---:|---:|");
    }
    println!();
    for row in &rows {
        print!("| {} | {:.0} |", row.engine, row.scan_rate);
        for (_, rate) in &row.passes {
            print!(" {:.0} | {:.2} |", rate, rate / row.scan_rate);
        }
        println!();
    }
    Ok(())
}
