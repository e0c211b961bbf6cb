//! `idle-bench`: the store of an idle demo network over time. Runs, side by side in
//! one run, networks shaped like `scripts/run.sh` (one `satellite run api` on its
//! embedded single-member store and ten `storagenode` processes checking in every
//! 30 s, real processes on loopback) that differ only in the store's automatic
//! compaction — the shipped default, a short retention, and off (how every store ran
//! before compaction) — and samples each store's size, data dir and revision.

use clap::Parser;
use orbit_kv::{Kv, RangeRequest, RemoteKv};
use orbit_testkit::free_port;
use orbit_testkit::replicas::{row, wait_health, Replicas};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An idle network's store size over time, with and without compaction.
#[derive(Parser)]
struct Args {
    /// Minutes to run.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Minutes between samples.
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// Storage nodes per network.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Networks, as `label=mode:retention` (mode as the replica configuration's
    /// `auto_compaction_mode`; `default` keeps the configuration silent).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default=default,5m=periodic:5m,off=off:0"
    )]
    networks: Vec<String>,
    /// The satellite binary (default: beside this one); storagenode is looked up beside it.
    #[arg(long, env = "ORBIT_SATELLITE_BIN")]
    satellite: Option<PathBuf>,
}

/// One running network.
struct Network {
    label: String,
    replicas: Replicas,
    nodes: Vec<Child>,
    _node_dirs: tempfile::TempDir,
}

impl Drop for Network {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
    }
}

/// The configuration header of a network: compaction as asked, every node on one /24.
fn header(spec: &str) -> anyhow::Result<String> {
    let compaction = match spec.split_once(':') {
        None if spec == "default" => String::new(),
        Some((mode, retention)) => {
            format!("auto_compaction_mode = {mode:?}\nauto_compaction_retention = {retention:?}\n")
        }
        None => anyhow::bail!("network spec {spec:?} is neither `default` nor mode:retention"),
    };
    // Every node is on 127.0.0.1, so distinct /24s would allow only one per segment.
    Ok(format!(
        "{compaction}[storage]\ndistinct_networks = false\n"
    ))
}

async fn start(
    satellite: &Path,
    storagenode: &Path,
    label: &str,
    spec: &str,
    nodes: usize,
) -> anyhow::Result<Network> {
    let table = row(1, free_port(), free_port(), true);
    let mut replicas = Replicas::timed(satellite, &table, "fixed", 1, &header(spec)?);
    // The satellite's identity made up front, so the nodes can be told its key.
    std::fs::create_dir_all(replicas.data_dir(0))?;
    let identity =
        orbit_identity::Identity::load_or_create(&replicas.data_dir(0).join("satellite.key"))?;
    let key = orbit_identity::hex_encode(&identity.public().0);
    replicas.spawn(0);
    wait_health(replicas.status[0], 200, Duration::from_secs(60)).await;
    let node_dirs = tempfile::tempdir()?;
    let mut children = Vec::new();
    for i in 0..nodes {
        let dir = node_dirs.path().join(format!("node{i}"));
        let ok = Command::new(storagenode)
            .args(["setup", "--dir"])
            .arg(&dir)
            .args([
                "--satellite-url",
                &replicas.api_url(0),
                "--satellite-key",
                &key,
            ])
            .args(["--capacity", &(2u64 << 30).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--check-in-s", "30"])
            .stdout(Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "storagenode setup failed for {}", dir.display());
        let log = std::fs::File::create(node_dirs.path().join(format!("node{i}.log")))?;
        children.push(
            Command::new(storagenode)
                .args(["run", "--dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
    }
    eprintln!("network {label}: satellite and {nodes} nodes running");
    Ok(Network {
        label: label.into(),
        replicas,
        nodes: children,
        _node_dirs: node_dirs,
    })
}

/// A store's reported size, data dir size (log and snapshot) and revision.
type Sample = (i64, u64, i64);

/// A network's store now.
async fn sample(n: &Network) -> anyhow::Result<Sample> {
    let kv = RemoteKv::connect(&[n.replicas.client_url(0)]).await?;
    let status = kv.client().status().await?;
    let revision = kv.range(RangeRequest::key("/")).await?.revision;
    Ok((
        status.db_size(),
        dir_size(&n.replicas.data_dir(0)),
        revision,
    ))
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn kib(b: u64) -> String {
    format!("{:.0}", b as f64 / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let satellite =
        orbit_bench::satellite_binary(args.satellite.as_deref()).map_err(anyhow::Error::msg)?;
    let storagenode = satellite.with_file_name("storagenode");
    anyhow::ensure!(
        storagenode.exists(),
        "{} not found: build it (cargo build --release -p storagenode)",
        storagenode.display()
    );
    let mut networks = Vec::new();
    for spec in &args.networks {
        let (label, spec) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("network {spec:?} is not label=spec"))?;
        networks.push(start(&satellite, &storagenode, label, spec, args.nodes).await?);
    }
    // Let every node check in once before the first sample.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let start = Instant::now();
    let mut rows: Vec<(u64, Vec<Sample>)> = Vec::new();
    loop {
        let minute = start.elapsed().as_secs() / 60;
        let mut cells = Vec::new();
        for n in &networks {
            cells.push(sample(n).await?);
        }
        eprintln!(
            "  minute {minute}: {}",
            networks
                .iter()
                .zip(&cells)
                .map(|(n, c)| format!("{} {} B", n.label, c.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push((minute, cells));
        if minute >= args.minutes {
            break;
        }
        let next = Duration::from_secs((minute + args.every).min(args.minutes) * 60);
        tokio::time::sleep(next.saturating_sub(start.elapsed())).await;
    }
    let labels: Vec<&str> = networks.iter().map(|n| n.label.as_str()).collect();
    print!("| minute |");
    for l in &labels {
        print!(" {l}: store KiB | {l}: data dir KiB | {l}: revision |");
    }
    println!();
    print!("|---:|");
    for _ in &labels {
        print!("---:|---:|---:|");
    }
    println!();
    for (minute, cells) in &rows {
        print!("| {minute} |");
        for (db, disk, rev) in cells {
            print!(" {} | {} | {rev} |", kib(*db as u64), kib(*disk));
        }
        println!();
    }
    let first = &rows[0].1;
    let last = &rows[rows.len() - 1].1;
    println!();
    for (i, l) in labels.iter().enumerate() {
        let grew = last[i].0 - first[i].0;
        println!(
            "{l}: {:+.0} KiB over {} minutes ({:+.1} KiB/min)",
            grew as f64 / 1024.0,
            rows[rows.len() - 1].0,
            grew as f64 / 1024.0 / rows[rows.len() - 1].0.max(1) as f64
        );
    }
    println!(
        "\nEach network: one satellite (embedded single-member store) and {} storage nodes checking in every 30 s, idle; store size as the member reports it (Maintenance.Status), data dir (Raft log and snapshot) as on disk.",
        args.nodes
    );
    Ok(())
}
