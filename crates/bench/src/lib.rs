//! What orbit's benchmark programs share: a closed-loop load driver and the one
//! compare-and-swap every benchmark compares against.

pub mod seed;

use futures::future::BoxFuture;
use orbit_kv::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Throughput and latency of one cell.
#[derive(Clone, Copy, Default, Debug)]
pub struct Stats {
    /// Operations that failed (counted, shown, never hidden).
    pub errors: usize,
    /// Successful operations per second in the measured window.
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// One operation of client `c`, its `i`-th.
pub type OpFn = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Runs `clients` closed-loop clients doing `op` for 0.5 s of warm-up and then
/// `seconds` measured.
pub async fn drive(clients: usize, seconds: f64, op: OpFn) -> Stats {
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut i = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    i += 1;
                    if let Err(e) = op(c, i).await {
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
    Stats {
        errors,
        per_sec: all.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// A compare-and-swap as an application does it: read the key, then write it only if
/// its mod revision is still the one read. A lost race is an error here: each client
/// owns its key.
pub async fn compare_and_swap(kv: &dyn Kv, key: String, value: Vec<u8>) -> Result<(), String> {
    let cur = kv
        .range(RangeRequest::key(key.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let rev = cur.kvs.first().map_or(0, |k| k.mod_revision);
    let t = kv
        .txn(TxnRequest {
            compare: vec![Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::Mod(rev),
            )],
            success: vec![TxnOp::Put(PutRequest::new(key, value))],
            failure: vec![],
        })
        .await
        .map_err(|e| e.to_string())?;
    if t.succeeded {
        Ok(())
    } else {
        Err("CAS lost a race it should not have".into())
    }
}

/// Client connections to a store cluster, shared by a benchmark's clients.
pub async fn pool_of(endpoints: &[String], conns: usize) -> Vec<Arc<dyn Kv>> {
    pool_as(endpoints, conns, None).await
}

/// [`pool_of`], the connections authenticated as `user`.
pub async fn pool_as(
    endpoints: &[String],
    conns: usize,
    user: Option<orbit_kv::Credentials>,
) -> Vec<Arc<dyn Kv>> {
    let mut pool: Vec<Arc<dyn Kv>> = Vec::new();
    for _ in 0..conns {
        pool.push(Arc::new(
            RemoteKv::connect_as(endpoints, None, user.clone())
                .await
                .expect("connecting"),
        ));
    }
    pool
}

/// Turns auth on in the cluster at `endpoints` (orbit's or etcd's, alike): `root`, and
/// user `bench` whose role may read and write under each of `prefixes`. The user's
/// credentials.
pub async fn enable_auth(
    endpoints: &[String],
    prefixes: &[&str],
) -> Result<orbit_kv::Credentials, etcd_client::Error> {
    let mut c = etcd_client::Client::connect(endpoints, None).await?;
    c.user_add("root", "bench-root", None).await?;
    c.user_grant_role("root", "root").await?;
    c.role_add("bench").await?;
    for p in prefixes {
        let perm = etcd_client::Permission::read_write(*p).with_prefix();
        c.role_grant_permission("bench", perm).await?;
    }
    c.user_add("bench", "bench-pw", None).await?;
    c.user_grant_role("bench", "bench").await?;
    c.auth_enable().await?;
    Ok(orbit_kv::Credentials {
        user: "bench".into(),
        password: "bench-pw".into(),
    })
}

/// The `satellite` binary a benchmark runs: `given`, or the one beside the benchmark.
pub fn satellite_binary(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("satellite"),
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it (cargo build --release -p satellite) or pass --satellite",
            path.display()
        ))
    }
}
