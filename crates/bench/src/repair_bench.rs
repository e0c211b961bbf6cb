//! `repair-bench`: MB/s of segments repaired through a network of storage nodes on
//! loopback, beside a plain download and upload of the same bytes through the uplink
//! library in the same run. Every segment of one object loses all but `repair` of its
//! pieces from its record (as a failed audit drops a piece), one loop pass queues them,
//! and one repair process drains the queue; the object is then read back and compared.

/// The allocator the orbit binaries use (see their `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use orbit_repair::{Outcome, RepairSection};
use orbit_segment_loop::Active;
use orbit_testplanet::Planet;
use std::sync::Arc;
use std::time::Instant;
use uplink::project::Options;

/// Repair throughput against a plain download and upload.
#[derive(Parser)]
struct Args {
    /// Object size, MiB.
    #[arg(long, default_value_t = 512)]
    mib: usize,
    /// Storage nodes.
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Repairs running at once in the repair process.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let o = Options::default();
    let size = (args.mib as u64) << 20;
    let data = orbit_testplanet::random_bytes(size as usize, 0x5eed);
    eprintln!("starting a network of {} nodes", args.nodes);
    let planet = Planet::start(args.nodes).await;
    let p = planet.project(o).await;
    p.create_bucket("bench").await?;
    p.upload("bench", "a", &data[..], &|_| {}).await?;

    // The plain way to move the same bytes: download the object, upload it again.
    let t = Instant::now();
    let mut back = Vec::with_capacity(data.len());
    p.download("bench", "a", &mut back, &|_| {}).await?;
    let t_down = t.elapsed().as_secs_f64();
    anyhow::ensure!(back == data, "the download differs from the upload");
    let t = Instant::now();
    p.upload("bench", "b", &back[..], &|_| {}).await?;
    let t_up = t.elapsed().as_secs_f64();
    drop(back);

    // Injure every segment of the object: keep `repair` pieces in its record.
    let enc = uplink::crypt::encrypt_path(&planet.access.root, "bench", "a");
    let (obj, segments) = planet.api.meta.get_object("test", "bench", &enc).await?;
    let mut segment_bytes = 0;
    for s in &segments {
        let (mut seg, rev) = planet
            .api
            .meta
            .segment_at(&obj.stream, s.index)
            .await?
            .expect("the segment just uploaded");
        seg.pieces.truncate(o.repair as usize);
        segment_bytes += seg.encrypted_size;
        anyhow::ensure!(
            planet
                .api
                .meta
                .replace_segment(&obj.stream, &seg, rev, None)
                .await?,
            "segment {} changed under the bench",
            s.index
        );
    }
    let (lp, _loop_workers) = planet.loop_process("bench-loop");
    let active: Active = Arc::new(|| true);
    let report = lp.segment_loop.run_pass(active).await;
    anyhow::ensure!(report.problems().is_none(), "{:?}", report.problems());
    let queued = lp.checker.stats().map_or(0, |s| s.injured);
    anyhow::ensure!(
        queued == segments.len() as u64,
        "{queued} of {} segments queued",
        segments.len()
    );

    let (rp, _repair_workers) = planet.repair_process(
        "bench-repair",
        RepairSection {
            concurrency: args.concurrency,
            ..RepairSection::default()
        },
    );
    let t = Instant::now();
    let outcomes = rp.repairer.run_once().await.map_err(anyhow::Error::msg)?;
    let t_repair = t.elapsed().as_secs_f64();
    let repaired = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Repaired { .. }))
        .count();
    anyhow::ensure!(
        repaired == segments.len(),
        "{repaired} of {} segments repaired: {outcomes:?}",
        segments.len()
    );
    let stats = rp.repairer.stats();
    let mut check = Vec::with_capacity(data.len());
    p.download("bench", "a", &mut check, &|_| {}).await?;
    anyhow::ensure!(check == data, "the repaired object differs");

    let plain = mbps(size, t_down + t_up);
    let repair = mbps(segment_bytes, t_repair);
    println!("| what | MB/s | × plain download + upload |");
    println!("|---|---:|---:|");
    for (what, v) in [
        ("plain download + upload through the uplink", plain),
        ("  download alone", mbps(size, t_down)),
        ("  upload alone", mbps(size, t_up)),
        (
            &format!("repair, {} at once", args.concurrency) as &str,
            repair,
        ),
    ] {
        println!("| {what} | {v:.0} | {:.2}x |", v / plain);
    }
    println!();
    println!(
        "One {} MiB object in {} segments of {} MiB, {}/{}/{}/{} Reed-Solomon, {} storage nodes in one process on loopback, one 2-core machine. Each segment kept {} of its pieces; repair downloaded {} MiB of pieces and uploaded {} MiB ({} pieces) to bring {} segments back to {} pieces.",
        args.mib,
        segments.len(),
        o.segment_size >> 20,
        o.k,
        o.repair,
        o.success,
        o.total,
        args.nodes,
        o.repair,
        stats.bytes_downloaded >> 20,
        stats.bytes_uploaded >> 20,
        stats.pieces_uploaded,
        repaired,
        o.total,
    );
    Ok(())
}
