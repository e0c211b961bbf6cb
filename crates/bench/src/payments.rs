//! `payments-bench`: payments validated per second through 1 and 3 satellite API
//! replicas, next to the raw compare-and-swaps per second of the same store cluster,
//! in one run. Three `satellite run api` processes in fixed mode, each running a
//! member of one 3-member store cluster; every payment is one signature recovery and
//! one compare-and-swap transaction on its channel (plus a read when the replica's
//! last-written version is missing or stale), durable (fsynced on a quorum) before it
//! is acknowledged — as is every raw CAS.

use clap::Parser;
use orbit_bench::{compare_and_swap, drive, pool_of, OpFn, Stats};
use orbit_kv::RemoteKv;
use orbit_payments::{Escrow, Payer, Payment, Wallet};
use orbit_testkit::free_port;
use orbit_testkit::replicas::{row, wait_health, Replicas};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Payments against raw compare-and-swap.
#[derive(Parser)]
struct Args {
    /// Seconds measured per cell (after a short warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    clients: Vec<usize>,
    /// The satellite binary (default: beside this one).
    #[arg(long, env = "ORBIT_SATELLITE_BIN")]
    satellite: Option<PathBuf>,
}

const PRICE: u64 = 1;

/// One client's channel and how much it has paid on it.
struct Spender {
    wallet: Wallet,
    channel: u64,
    paid: AtomicU64,
}

/// Clients paying through `payers` (client `c` uses payer `c % payers.len()`).
fn pay_fn(
    payers: Vec<Arc<Payer>>,
    spenders: Arc<Vec<Spender>>,
    escrow: orbit_payments::Address,
) -> OpFn {
    Arc::new(move |c, _| {
        let payer = payers[c % payers.len()].clone();
        let spenders = spenders.clone();
        Box::pin(async move {
            let s = &spenders[c];
            let amount = (s.paid.load(Ordering::Relaxed) + 1) * PRICE;
            let p = Payment::sign(&s.wallet, &escrow, s.channel, 0, amount);
            payer.send("get", &p).await.map_err(|e| e.to_string())?;
            s.paid.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let satellite =
        orbit_bench::satellite_binary(args.satellite.as_deref()).map_err(anyhow::Error::msg)?;
    let (escrow, recipient) = (Wallet::random(), Wallet::random());
    let table: String = (1..=3)
        .map(|id| row(id, free_port(), free_port(), true))
        .collect();
    let config = format!(
        "[payments]\nescrow = \"{}\"\nrecipient = \"{}\"\n[payments.prices]\nget = {PRICE}\n",
        escrow.address(),
        recipient.address()
    );
    let mut r = Replicas::with(&satellite, &table, "fixed", 3, &config);
    for i in 0..3 {
        r.spawn(i);
    }
    for i in 0..3 {
        wait_health(r.status[i], 200, Duration::from_secs(60)).await;
    }
    let endpoints: Vec<String> = (0..3).map(|i| r.client_url(i)).collect();
    let ledger = Escrow::new(
        Arc::new(RemoteKv::connect(&endpoints).await?),
        escrow.address(),
    );

    let most = args.clients.iter().copied().max().unwrap_or(1);
    eprintln!("opening {most} channels");
    let mut spenders = Vec::new();
    for _ in 0..most {
        let wallet = Wallet::random();
        ledger.deposit(&wallet.address(), u64::MAX / 2).await?;
        let p = Payer::connect(&r.api_url(0), &r.satellite_key(0), wallet.clone()).await?;
        let ch = p
            .open(u64::MAX / 4, orbit_payments::api::unix_now() + 86_400, None)
            .await?;
        spenders.push(Spender {
            wallet,
            channel: ch.id,
            paid: AtomicU64::new(0),
        });
    }
    let spenders = Arc::new(spenders);
    // One connection per client to its replica, as separate uplinks would have.
    let mut payers: Vec<Vec<Arc<Payer>>> = vec![Vec::new(); 3];
    for (i, per) in payers.iter_mut().enumerate() {
        for _ in 0..most.div_ceil(3).max(1) {
            per.push(Arc::new(
                Payer::connect(&r.api_url(i), &r.satellite_key(i), Wallet::random()).await?,
            ));
        }
    }
    let pool = pool_of(&endpoints, 16).await;

    let mut rows: Vec<(usize, Stats, Stats, Stats)> = Vec::new();
    for &c in &args.clients {
        let pool = pool.clone();
        let cas: OpFn = Arc::new(move |client, _| {
            let kv = pool[client % pool.len()].clone();
            Box::pin(async move {
                compare_and_swap(&*kv, format!("cas/{client}"), vec![b'x'; 256]).await
            })
        });
        let raw = drive(c, args.seconds, cas).await;
        eprintln!("  raw CAS x{c}: {:.0}/s", raw.per_sec);
        let one: Vec<Arc<Payer>> = payers[0].clone();
        let through_one = drive(
            c,
            args.seconds,
            pay_fn(one, spenders.clone(), escrow.address()),
        )
        .await;
        eprintln!(
            "  payments via 1 replica x{c}: {:.0}/s",
            through_one.per_sec
        );
        // Client c on replica c % 3, each with its own connection.
        let spread: Vec<Arc<Payer>> = (0..c)
            .map(|k| payers[k % 3][k / 3 % payers[k % 3].len()].clone())
            .collect();
        let through_three = drive(
            c,
            args.seconds,
            pay_fn(spread, spenders.clone(), escrow.address()),
        )
        .await;
        eprintln!(
            "  payments via 3 replicas x{c}: {:.0}/s",
            through_three.per_sec
        );
        rows.push((c, raw, through_one, through_three));
    }
    // Every acknowledged payment is in the ledger.
    for s in spenders.iter() {
        let ch = ledger.channel(s.channel).await?;
        anyhow::ensure!(
            ch.authorized == s.paid.load(Ordering::Relaxed) * PRICE,
            "ledger differs from acknowledged payments on channel {}",
            s.channel
        );
    }
    println!("| clients | raw CAS/s | payments/s via 1 replica | ratio | payments/s via 3 replicas | ratio | p50 / p99 ms CAS | p50 / p99 ms via 1 | p50 / p99 ms via 3 | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, raw, one, three) in &rows {
        println!(
            "| {c} | {:.0} | {:.0} | {:.2}x | {:.0} | {:.2}x | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} / {} |",
            raw.per_sec,
            one.per_sec,
            one.per_sec / raw.per_sec.max(1.0),
            three.per_sec,
            three.per_sec / raw.per_sec.max(1.0),
            raw.p50_ms,
            raw.p99_ms,
            one.p50_ms,
            one.p99_ms,
            three.p50_ms,
            three.p99_ms,
            raw.errors,
            one.errors,
            three.errors
        );
    }
    println!();
    println!("One 3-member store cluster run by three `satellite run api` replicas (fixed mode), loopback, one 2-core machine shared by clients and servers, {} s per cell after 0.5 s warm-up. Raw CAS: the client reads its key and writes it back with a mod-revision compare, straight to the store (two round trips). Payment: the client signs the next cumulative amount; a replica recovers the signer, judges the payment on the channel version it last wrote (reading the channel when it has none, or when that version proved stale) and commits it with one mod-revision compare, so usually one store round trip. Both are fsynced on a quorum before they are acknowledged. Every acknowledged payment was checked in the ledger afterwards.", args.seconds);
    Ok(())
}
