//! `network-bench`: upload and download MB/s of one large object through a network of
//! ten storage nodes on loopback (testplanet: a satellite API on a real store member,
//! real piece files), and in the same run the physical limits of this machine for
//! the same bytes — Reed-Solomon encoding and decoding alone, encryption alone, and
//! writing the bytes to disk — as a table of ratios.

/// The allocator the orbit binaries use (see their `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use orbit_testplanet::Planet;
use std::io::Write;
use std::time::Instant;
use uplink::project::Options;
use uplink::{crypt, erasure};

/// Network throughput against the machine's limits.
#[derive(Parser)]
struct Args {
    /// Object size, MiB.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Storage nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let o = Options::default();
    let size = args.mib << 20;
    let data = orbit_testplanet::random_bytes(size, 0x9e37_79b9_7f4a_7c15);
    let seg = o.segment_size;

    // The limits, each over the same bytes in the same segments, one segment at a
    // time as the upload and download pipelines do.
    let key = [7u8; 32];
    let (mut t_enc, mut t_rs, mut t_unrs) = (0f64, 0f64, 0f64);
    for (i, c) in data.chunks(seg).enumerate() {
        // In a buffer as the uplink reads segments into.
        let mut plain = uplink::project::segment_buffer(c.len());
        plain.extend_from_slice(c);
        let t = Instant::now();
        let e = crypt::encrypt_segment(&key, i as u32, plain);
        t_enc += t.elapsed().as_secs_f64();
        let e_len = e.len();
        let t = Instant::now();
        let pieces = erasure::encode(e, o.k as usize, o.total as usize).expect("encode");
        t_rs += t.elapsed().as_secs_f64();
        // The worst case: only recovery pieces (every original rebuilt).
        let chosen: Vec<(usize, Vec<u8>)> = pieces
            .into_iter()
            .enumerate()
            .skip(o.total as usize - o.k as usize)
            .map(|(n, p)| (n, p.to_vec()))
            .collect();
        let t = Instant::now();
        let back = erasure::decode(&chosen, o.k as usize, o.total as usize, e_len).expect("decode");
        t_unrs += t.elapsed().as_secs_f64();
        assert_eq!(back.len(), e_len);
    }
    let (encrypt, rs_encode, rs_decode) = (mbps(size, t_enc), mbps(size, t_rs), mbps(size, t_unrs));
    // The disk: best of three (its speed varies with what the page cache holds).
    let dir = tempfile::tempdir()?;
    let mut disk = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        {
            let mut f = std::fs::File::create(dir.path().join("limit.bin"))?;
            for c in data.chunks(seg) {
                f.write_all(c)?;
            }
            f.sync_all()?;
        }
        disk = disk.max(mbps(size, t.elapsed().as_secs_f64()));
        std::fs::remove_file(dir.path().join("limit.bin"))?;
    }

    eprintln!("starting a network of {} nodes", args.nodes);
    let planet = Planet::start(args.nodes).await;
    let p = planet.project(o).await;
    p.create_bucket("bench").await?;
    let t = Instant::now();
    p.upload("bench", "object", &data[..], &|_| {}).await?;
    let upload = mbps(size, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = p
        .download("bench", "object", tokio::io::sink(), &|_| {})
        .await?;
    let download = mbps(size, t.elapsed().as_secs_f64());
    anyhow::ensure!(n as usize == size, "downloaded {n} bytes of {size}");

    let slowest = [encrypt, rs_encode, rs_decode, disk]
        .into_iter()
        .fold(f64::MAX, f64::min);
    println!("| what | MB/s | vs slowest limit |");
    println!("|---|---:|---:|");
    for (what, v) in [
        ("upload through the network", upload),
        ("download through the network", download),
        ("limit: AES-256-GCM encryption alone", encrypt),
        ("limit: Reed-Solomon encode alone", rs_encode),
        (
            "limit: Reed-Solomon decode alone (recovery pieces only)",
            rs_decode,
        ),
        ("limit: writing the bytes to disk (fsync, best of 3)", disk),
    ] {
        println!("| {what} | {v:.0} | {:.2}x |", v / slowest);
    }
    println!();
    println!(
        "One {} MiB object, {}/{}/{}/{} Reed-Solomon, {} MiB segments, {} storage nodes in one process on loopback (each piece fsynced on its node before the node answers), one 2-core machine. Upload writes {}x the object to the nodes' disks before the long tail is cancelled.",
        args.mib,
        o.k,
        o.repair,
        o.success,
        o.total,
        o.segment_size >> 20,
        args.nodes,
        o.success as f64 / o.k as f64
    );
    Ok(())
}
