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
use orbit_kv::{Kv, RangeRequest, RemoteKv, Scan};
use orbit_repair::Checker;
use orbit_satellite_model::keys;
use orbit_satellite_model::repair::HealthRules;
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
    let seeded = orbit_bench::seed::seed(&*kv, args.nodes, args.segments).await?;
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
