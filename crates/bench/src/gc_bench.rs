//! `gc-bench`: how long the loop takes to build garbage-collection filters for
//! seeded segments (beside a bare pass over the same segments in the same run), how
//! large they are per piece and their measured false-positive rate, against Storj's
//! figures; and how long a storage node takes to apply a filter to its pieces.

/// The allocator the orbit binaries use (see their `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use orbit_gc::{GcObserver, GcSection};
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_protocol::bloom::Filter;
use orbit_protocol::{Action, OrderLimit, PieceHash, PieceId, RetainHeader};
use orbit_satellite_model::gc::GcState;
use orbit_segment_loop::{Active, LoopSection, SegmentLoop};
use orbit_testkit::{OrbitCluster, Timings};
use std::sync::Arc;
use std::time::Instant;
use storagenode::pieces::{PieceHeader, PieceStore};
use storagenode::retain::RetainStore;

/// Filter building and retain.
#[derive(Parser)]
struct Args {
    /// Segments seeded (10 pieces each).
    #[arg(long, default_value_t = 1_000_000)]
    segments: u64,
    /// Nodes the pieces are spread over.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Pieces on the node that applies a filter.
    #[arg(long, default_value_t = 1_000_000)]
    pieces: u64,
    /// Target false-positive rate.
    #[arg(long, default_value_t = 0.1)]
    false_positive: f64,
}

async fn pass(kv: &Arc<dyn Kv>, gc: Option<Arc<GcObserver>>) -> anyhow::Result<f64> {
    let mut l = SegmentLoop::new(kv.clone(), LoopSection::default());
    if let Some(gc) = gc {
        l.add(gc);
    }
    let active: Active = Arc::new(|| true);
    let t = Instant::now();
    let r = l.run_pass(active).await;
    anyhow::ensure!(r.problems().is_none(), "{:?}", r.problems());
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to apply a filter keeping half of `n` pieces on a node in `dir`.
fn retain(dir: &std::path::Path, n: u64, fp: f64) -> anyhow::Result<(f64, f64, u64)> {
    let sat = Identity::generate();
    let store = PieceStore::open(&dir.join("storage"), 1 << 40)?;
    let limit = OrderLimit {
        serial: [0; 16],
        satellite: sat.id(),
        uplink: sat.public(),
        node: sat.id(),
        piece: PieceId::default(),
        action: Action::Put,
        limit: 16,
        piece_expiration: 0,
        order_expiration: 0,
        metadata: Vec::new(),
        signature: vec![0; 64],
    };
    let data = [7u8; 16];
    let hash = *blake3::hash(&data).as_bytes();
    let mut filter = Filter::new(n / 2, fp);
    let t = Instant::now();
    for i in 0..n {
        let piece = PieceId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let mut w = store.writer(piece, 16)?;
        w.write(&data)?;
        w.commit(&PieceHeader {
            limit: OrderLimit {
                piece,
                ..limit.clone()
            },
            hash: PieceHash {
                piece,
                hash,
                size: 16,
                timestamp: 0,
                signature: Vec::new(),
            },
            stored_at: 1,
        })?;
        if i % 2 == 0 {
            filter.add(&piece);
        }
    }
    eprintln!("{n} pieces written in {:.1} s", t.elapsed().as_secs_f64());
    let bytes = filter.encode();
    let rs = RetainStore::open(&dir.join("retain"))?;
    rs.store(
        &RetainHeader::sign(&sat, sat.id(), 1000, 1, n / 2, &bytes),
        &bytes,
    )?;
    let t = Instant::now();
    let applied = rs.apply(&store, 0, 2000)?;
    let secs = t.elapsed().as_secs_f64();
    let trashed = applied.iter().map(|a| a.trashed).sum::<u64>();
    Ok((secs, trashed as f64 / (n / 2) as f64, trashed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let seeded = orbit_bench::seed::seed(&*kv, args.nodes, args.segments).await?;
    eprintln!("{} segments seeded in {seeded:.1} s", args.segments);
    let bare = pass(&kv, None).await?;
    let gc = Arc::new(GcObserver::new(
        kv.clone(),
        GcSection {
            false_positive: args.false_positive,
            ..GcSection::default()
        },
    ));
    // The first pass counts; the second builds and publishes the filters.
    pass(&kv, Some(gc.clone())).await?;
    let build = pass(&kv, Some(gc.clone())).await?;
    let stats = gc.stats().expect("a finished pass");
    anyhow::ensure!(stats.filters == args.nodes as u64, "{stats:?}");
    let state = GcState::new(kv.clone());
    let heads = state.heads().await?;
    let largest = heads.iter().map(|h| h.bytes).max().unwrap_or(0);
    let f = Filter::decode(&state.filter(&heads[0]).await?)?;
    let probes = 1_000_000u64;
    let hits = (0..probes)
        .filter(|_| f.contains(&PieceId::random()))
        .count();
    let measured = hits as f64 / probes as f64;
    let bits_per_piece = stats.bytes as f64 * 8.0 / stats.pieces as f64;

    let dir = tempfile::Builder::new()
        .prefix("gc-bench")
        .tempdir_in("/dev/shm")?;
    let (retain_s, trashed_share, trashed) = retain(dir.path(), args.pieces, args.false_positive)?;

    println!("| figure | orbit | Storj |");
    println!("|---|---:|---:|");
    println!(
        "| bare pass over {} segments, s | {bare:.2} | |",
        args.segments
    );
    println!(
        "| pass building {} filters, s | {build:.2} | |",
        stats.filters
    );
    println!(
        "| filter build time (pass − bare pass), s | {:.2} | |",
        build - bare
    );
    println!("| pieces in filters | {} | |", stats.pieces);
    println!("| bits per piece | {bits_per_piece:.2} | 4.8 |");
    println!(
        "| largest filter, bytes ({} pieces per node) | {largest} | cap 2,000,000 |",
        stats.pieces / args.nodes as u64
    );
    println!(
        "| measured false-positive rate (target {:.0}%) | {:.2}% | 10% |",
        args.false_positive * 100.0,
        measured * 100.0
    );
    println!(
        "| retain: {} pieces on one node, s | {retain_s:.2} | |",
        args.pieces
    );
    println!(
        "| retain: pieces checked per second | {:.0} | |",
        args.pieces as f64 / retain_s
    );
    println!(
        "| retain: garbage trashed (filter false positives keep the rest) | {:.1}% ({trashed}) | |",
        trashed_share * 100.0
    );
    println!();
    println!("Segments seeded straight into orbit's embedded store (10 pieces each over {} nodes), default loop settings (2 ranges); retain on a tmpfs piece store (so writing the pieces costs no fsync; the apply reads every header), one 2-core machine.", args.nodes);
    Ok(())
}
