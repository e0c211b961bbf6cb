//! `audit-bench`: piece audits per second of one audit worker and the bytes each moves,
//! verified slices against whole-piece verification of the same pieces in the same
//! run, through a network of storage nodes on loopback (testplanet: real piecestores,
//! real piece files).

/// The allocator the orbit binaries use (see their `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use orbit_audit::AuditSection;
use orbit_satellite_model::audit::AuditJob;
use orbit_satellite_model::reputation::{AuditOutcome, ReputationConfig};
use orbit_testplanet::Planet;
use std::time::Instant;
use uplink::project::Options;

/// Slice audits against whole-piece audits.
#[derive(Parser)]
struct Args {
    /// Object size, MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Segment size, MiB (pieces are a quarter of it with k = 4).
    #[arg(long, default_value_t = 64)]
    segment_mib: usize,
    /// Storage nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Times every piece is audited in each mode.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let o = Options {
        segment_size: args.segment_mib << 20,
        ..Options::default()
    };
    let data = orbit_testplanet::random_bytes(args.mib << 20, 0xa0d17);
    eprintln!("starting a network of {} nodes", args.nodes);
    let planet = Planet::start(args.nodes).await;
    let p = planet.project(o).await;
    p.create_bucket("bench").await?;
    p.upload("bench", "a", &data[..], &|_| {}).await?;
    let enc = uplink::crypt::encrypt_path(&planet.access.root, "bench", "a");
    let (obj, segments) = planet.api.meta.get_object("test", "bench", &enc).await?;
    let jobs: Vec<AuditJob> = segments
        .iter()
        .map(|s| AuditJob {
            stream: obj.stream,
            index: s.index,
            pass: 0,
            inserted: 0,
        })
        .collect();
    let pieces: usize = segments.iter().map(|s| s.pieces.len()).sum();
    let piece_mib = segments[0].piece_size as f64 / (1 << 20) as f64;

    let mut rows = Vec::new();
    for mode in ["slice", "whole"] {
        let section = AuditSection {
            mode: mode.into(),
            concurrency: 1,
            timeout_s: 600,
            ..AuditSection::default()
        };
        let (a, _w) = planet.audit_process(mode, section, ReputationConfig::default());
        let t = Instant::now();
        let mut audits = 0usize;
        for _ in 0..args.rounds {
            // One worker: segment after segment, a segment's nodes at once.
            for job in &jobs {
                let done = a
                    .auditor
                    .audit_segment(job)
                    .await
                    .map_err(anyhow::Error::msg)?;
                anyhow::ensure!(
                    done.iter().all(|x| x.outcome == AuditOutcome::Success),
                    "{done:?}"
                );
                audits += done.len();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let moved = a.auditor.stats().bytes_moved;
        rows.push((
            mode,
            audits,
            audits as f64 / secs,
            moved as f64 / audits as f64,
        ));
    }
    let whole_rate = rows[1].2;
    println!("| audit | piece audits | audits/s (one worker) | bytes moved per audit | × whole-piece rate |");
    println!("|---|---:|---:|---:|---:|");
    for (mode, n, rate, per) in &rows {
        let what = match *mode {
            "slice" => "verified slice (one 16 KiB group + proof)",
            _ => "whole piece, hashed",
        };
        println!(
            "| {what} | {n} | {rate:.1} | {per:.0} | {:.1}x |",
            rate / whole_rate
        );
    }
    println!();
    println!(
        "One {} MiB object in {} segments of {} MiB, {}/{}/{}/{}: {pieces} pieces of {piece_mib:.0} MiB on {} storage nodes in one process on loopback, one 2-core machine; every piece audited {} times in each mode. Storj's stripe audit moves one 256-byte erasure share from each node of a segment.",
        args.mib,
        segments.len(),
        args.segment_mib,
        o.k,
        o.repair,
        o.success,
        o.total,
        args.nodes,
        args.rounds,
    );
    Ok(())
}
