//! Payment channels through `satellite run api` replicas: separate processes sharing
//! one store cluster (fixed mode, each replica runs a member), killed with SIGKILL.

mod common;

use common::replicas::{row, satellite, wait_health, Replicas};
use orbit_kv::RemoteKv;
use orbit_payments::{Address, Channel, ClientError, Escrow, Payer, Payment, Wallet};
use orbit_testkit::free_port;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRICE: u64 = 10;

/// The tests here each run three replicas under load; two at once on a 2-core machine
/// starve each other into store timeouts, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` replicas, all running store members, all serving payments of one escrow.
async fn replicas(n: usize, escrow: Address, recipient: Address) -> Replicas {
    let table: String = (1..=n)
        .map(|id| row(id, free_port(), free_port(), true))
        .collect();
    let payments = format!(
        "[payments]\nescrow = \"{escrow}\"\nrecipient = \"{recipient}\"\nexpiry_threshold_s = 60\n[payments.prices]\nget = {PRICE}\nput = 25\n"
    );
    let mut r = Replicas::with(satellite(), &table, "fixed", n, &payments);
    for i in 0..n {
        r.spawn(i);
    }
    for i in 0..n {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    r
}

/// The escrow ledger, straight on the store (as the operator sees it).
async fn ledger(r: &Replicas, escrow: Address) -> Escrow {
    let urls: Vec<String> = (0..r.clients.len()).map(|i| r.client_url(i)).collect();
    let kv = RemoteKv::connect(&urls).await.unwrap();
    Escrow::new(Arc::new(kv), escrow)
}

async fn payer(r: &Replicas, i: usize, w: &Wallet) -> Payer {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Payer::connect(&r.api_url(i), &r.satellite_key(i), w.clone()).await {
            Ok(p) => return p,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn in_an_hour() -> u64 {
    orbit_payments::api::unix_now() + 3600
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_payment_sent_to_three_replicas_is_accepted_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (escrow, recipient, user) = (Wallet::random(), Wallet::random(), Wallet::random());
    let r = replicas(3, escrow.address(), recipient.address()).await;
    ledger(&r, escrow.address())
        .await
        .deposit(&user.address(), 1_000_000)
        .await
        .unwrap();
    let payers: Vec<Payer> = futures::future::join_all((0..3).map(|i| payer(&r, i, &user))).await;
    let ch = payers[0].open(100_000, in_an_hour(), None).await.unwrap();
    let rounds: u64 = std::env::var("ORBIT_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut first = None;
    for round in 1..=rounds {
        let p = Payment::sign(&user, &escrow.address(), ch.id, 0, round * PRICE);
        first.get_or_insert(p.clone());
        let results = futures::future::join_all(payers.iter().map(|x| x.send("get", &p))).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.reason(), Some("already-accepted"), "round {round}: {e}");
        }
    }
    // Replays later, on any replica, are refused.
    let last = Payment::sign(&user, &escrow.address(), ch.id, 0, rounds * PRICE);
    for p in &payers {
        assert_eq!(
            p.send("get", &last).await.unwrap_err().reason(),
            Some("already-accepted")
        );
        assert_eq!(
            p.send("get", first.as_ref().unwrap())
                .await
                .unwrap_err()
                .reason(),
            Some("wrong-amount")
        );
    }
    let now = ledger(&r, escrow.address())
        .await
        .channel(ch.id)
        .await
        .unwrap();
    assert_eq!(now.authorized, rounds * PRICE);
}

/// Pays `kind` on a channel through the replicas in `order`, moving to the next when
/// one does not answer. A payment whose answer was lost is sent again elsewhere: it
/// was then accepted once (here or there) — "already accepted" — or not at all.
async fn pay_through(
    payers: &[Payer],
    order: &mut [usize],
    p: &Payment,
) -> Result<(), ClientError> {
    let mut in_doubt = false;
    // Long enough to ride out a leader election on a loaded two-core machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        let i = order[0];
        match payers[i].send("get", p).await {
            Ok(_) => return Ok(()),
            Err(e) if e.reason() == Some("already-accepted") && in_doubt => return Ok(()),
            Err(e)
                if e.reason().is_none()
                    || e.reason() == Some("store")
                    || e.reason() == Some("conflict") =>
            {
                in_doubt = true;
                last = Some(e);
                order.rotate_left(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Transport("no replica answered".into())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_through_three_replicas_lose_and_double_nothing_when_one_dies() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (escrow, recipient) = (Wallet::random(), Wallet::random());
    let mut r = replicas(3, escrow.address(), recipient.address()).await;
    let ledger = ledger(&r, escrow.address()).await;
    let clients = 64;
    let users: Vec<Wallet> = (0..clients).map(|_| Wallet::random()).collect();
    for u in &users {
        ledger.deposit(&u.address(), 100_000).await.unwrap();
    }
    let run_for = Duration::from_secs(8);
    // Every channel open before any client pays.
    let mut opened = Vec::new();
    for (c, u) in users.iter().enumerate() {
        let payers = futures::future::join_all((0..3).map(|i| payer(&r, i, u))).await;
        let ch: Channel = payers[c % 3]
            .open(100_000, in_an_hour(), None)
            .await
            .unwrap();
        opened.push((c, u, payers, ch));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, u, payers, ch) in opened {
        let (u, escrow) = (u.clone(), escrow.address());
        tasks.push(tokio::spawn(async move {
            let mut order: Vec<usize> = (0..3).map(|k| (c + k) % 3).collect();
            let mut paid = 0u64;
            while started.elapsed() < run_for {
                let p = Payment::sign(&u, &escrow, ch.id, 0, (paid + 1) * PRICE);
                match pay_through(&payers, &mut order, &p).await {
                    Ok(()) => paid += 1,
                    Err(e) => panic!("client {c}: {e}"),
                }
            }
            (ch.id, paid)
        }));
    }
    tokio::time::sleep(run_for / 2).await;
    r.kill(1);
    let mut total = 0;
    for t in tasks {
        let (id, paid) = t.await.unwrap();
        let ch = patiently(|| ledger.channel(id)).await;
        assert_eq!(
            ch.authorized,
            paid * PRICE,
            "channel {id}: ledger and client disagree"
        );
        total += paid;
    }
    assert!(total > clients as u64, "too few payments: {total}");
    eprintln!(
        "{total} payments by {clients} clients, one replica SIGKILLed, ledger equal to the sum"
    );
    // Claims move exactly the accepted total to the recipient, once — also when a
    // run is cut short by the store (right after the kill a request can meet the dead
    // leader and fail in doubt): the next run completes it.
    patiently(|| ledger.claim_all()).await;
    let paid_to = recipient.address();
    assert_eq!(
        patiently(|| ledger.claim_all()).await,
        0,
        "nothing left to claim"
    );
    assert_eq!(
        patiently(|| ledger.account(&paid_to)).await.balance,
        total * PRICE
    );
}

/// Runs a ledger call again while the store fails it in doubt (a timeout, a dead
/// leader): the reads and the claim runs here are safe to repeat.
async fn patiently<T, F, Fut>(call: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, orbit_payments::PayError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if e.reason() == "store" && Instant::now() < deadline => {
                eprintln!("store busy, again: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_payments_get_a_clear_error_and_change_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (escrow, recipient, user) = (Wallet::random(), Wallet::random(), Wallet::random());
    let r = replicas(1, escrow.address(), recipient.address()).await;
    let ledger = ledger(&r, escrow.address()).await;
    ledger.deposit(&user.address(), 1000).await.unwrap();
    let p = payer(&r, 0, &user).await;
    let ch = p.open(100, in_an_hour(), None).await.unwrap();
    p.pay(ch.id, "get").await.unwrap();
    let e = escrow.address();
    let stranger = Wallet::random();
    let mut short = Payment::sign(&user, &e, ch.id, 0, 20);
    short.signature.truncate(30);
    let cases: Vec<(&str, Payment, &str)> = vec![
        ("get", short, "bad-signature"),
        (
            "get",
            Payment::sign(&stranger, &e, ch.id, 0, 20),
            "wrong-signer",
        ),
        (
            "get",
            Payment::sign(&user, &e, ch.id, 0, 25),
            "wrong-amount",
        ),
        (
            "put",
            Payment::sign(&user, &e, ch.id, 0, 20),
            "wrong-amount",
        ),
        (
            "get",
            Payment::sign(&user, &e, ch.id, 3, 20),
            "incorrect-nonce",
        ),
        (
            "get",
            Payment::sign(&user, &e, 999, 0, 10),
            "unknown-channel",
        ),
        ("list", Payment::sign(&user, &e, ch.id, 0, 20), "malformed"),
        // Signed for another escrow: worthless here.
        (
            "get",
            Payment::sign(&user, &Wallet::random().address(), ch.id, 0, 20),
            "wrong-signer",
        ),
    ];
    for (kind, pay, want) in cases {
        let err = p.send(kind, &pay).await.unwrap_err();
        assert_eq!(err.reason(), Some(want), "{kind}: {err}");
    }
    // Over the value: a channel of 15 takes one payment of 10, not two.
    let small = p.open(15, in_an_hour(), None).await.unwrap();
    p.pay(small.id, "get").await.unwrap();
    let err = p.pay(small.id, "get").await.unwrap_err();
    assert_eq!(err.reason(), Some("over-value"), "{err}");
    // Expiring within the threshold (60 s): refused until extended.
    let soon = p
        .open(100, orbit_payments::api::unix_now() + 30, None)
        .await
        .unwrap();
    let err = p.pay(soon.id, "get").await.unwrap_err();
    assert_eq!(err.reason(), Some("expiring"), "{err}");
    p.extend(soon.id, in_an_hour()).await.unwrap();
    p.pay(soon.id, "get").await.unwrap();
    // Nothing moved but the accepted payments.
    assert_eq!(ledger.channel(ch.id).await.unwrap().authorized, 10);
    assert_eq!(ledger.channel(small.id).await.unwrap().authorized, 10);
    assert_eq!(
        ledger.account(&user.address()).await.unwrap().balance,
        1000 - 100 - 15 - 100
    );
}

/// Signs a payment with Python's eth_account, from the message bytes up.
fn python_sign(key_hex: &str, escrow: &Address, channel: u64, nonce: u64, amount: u64) -> Vec<u8> {
    let script = r#"
import sys
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
key, escrow, channel, nonce, amount = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
message = (b"__MPE_claim_message" + bytes.fromhex(escrow[2:]) + channel.to_bytes(32, "big")
           + nonce.to_bytes(32, "big") + amount.to_bytes(32, "big"))
signed = Account.sign_message(encode_defunct(primitive=keccak(message)), private_key=bytes.fromhex(key))
print(bytes(signed.signature).hex())
"#;
    let out = Command::new("python3")
        .args(["-c", script, key_hex, &escrow.to_string()])
        .args([channel.to_string(), nonce.to_string(), amount.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "eth_account (pip install eth-account; scripts/setup.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    orbit_payments::crypto::decode_hex(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_signed_by_python_eth_account_are_accepted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (escrow, recipient, user) = (Wallet::random(), Wallet::random(), Wallet::random());
    let r = replicas(1, escrow.address(), recipient.address()).await;
    ledger(&r, escrow.address())
        .await
        .deposit(&user.address(), 1000)
        .await
        .unwrap();
    let p = payer(&r, 0, &user).await;
    let ch = p.open(500, in_an_hour(), None).await.unwrap();
    let e = escrow.address();
    let sig = python_sign(&user.secret_hex(), &e, ch.id, 0, 10);
    assert_eq!(
        sig,
        Payment::sign(&user, &e, ch.id, 0, 10).signature,
        "same bytes as ours"
    );
    let pay = |amount: u64, signature: Vec<u8>| Payment {
        channel_id: ch.id,
        nonce: 0,
        amount,
        signature,
    };
    // One byte changed in the signature, or in the message: refused.
    for i in [0usize, 40, 64] {
        let mut bad = sig.clone();
        bad[i] ^= 0x01;
        let err = p.send("get", &pay(10, bad)).await.unwrap_err();
        assert!(
            matches!(err.reason(), Some("bad-signature" | "wrong-signer")),
            "byte {i}: {err}"
        );
    }
    let err = p
        .send(
            "get",
            &pay(20, python_sign(&user.secret_hex(), &e, ch.id, 0, 10)),
        )
        .await;
    assert!(err.is_err());
    p.send("get", &pay(10, sig)).await.unwrap();
    let sig2 = python_sign(&user.secret_hex(), &e, ch.id, 0, 20);
    assert_eq!(p.send("get", &pay(20, sig2)).await.unwrap().authorized, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uplink_and_operator_commands() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (escrow, recipient) = (Wallet::random(), Wallet::random());
    let r = replicas(1, escrow.address(), recipient.address()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("uplink.key");
    // The uplink's command line, run in-process.
    std::env::set_var("ORBIT_KEY", &key);
    std::env::set_var("ORBIT_SATELLITE", r.api_url(0));
    std::env::set_var(
        "ORBIT_SATELLITE_KEY",
        orbit_identity::hex_encode(&r.satellite_key(0).0),
    );
    async fn uplink(args: &[&str]) -> String {
        let mut out = Vec::new();
        let argv = std::iter::once("uplink").chain(args.iter().copied());
        if let Err(e) = uplink::cli::run(argv, &mut out).await {
            panic!("uplink {args:?}: {e:#}");
        }
        String::from_utf8(out).unwrap()
    }
    let address = uplink(&["key", "new"]).await;
    let address = address.split_whitespace().next().unwrap().to_string();
    let satellite = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
            .args(args)
            .args([
                "--endpoints",
                &r.client_url(0),
                "--escrow",
                &escrow.address().to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    satellite(&[
        "escrow",
        "deposit",
        "--account",
        &address,
        "--amount",
        "500",
    ]);
    assert!(uplink(&["account"]).await.contains("balance 500"));
    assert!(uplink(&["channel", "open", "--value", "100"])
        .await
        .contains("channel 1: value 100"));
    assert!(
        uplink(&["channel", "fund", "--channel", "1", "--amount", "50"])
            .await
            .contains("value 150")
    );
    uplink(&[
        "channel",
        "extend",
        "--channel",
        "1",
        "--expires-in",
        "99999999",
    ])
    .await;
    assert!(uplink(&[
        "channel",
        "pay",
        "--channel",
        "1",
        "--kind",
        "put",
        "--count",
        "3"
    ])
    .await
    .contains("authorized 75"));
    assert!(uplink(&["channel", "status", "--channel", "1"])
        .await
        .contains("nonce 0 authorized 75"));
    assert!(
        satellite(&["escrow", "claim", "start", "--channel", "1"]).contains("nonce 0 amount 75")
    );
    assert!(satellite(&["escrow", "claim", "list"]).contains("1       0     75"));
    // The operator stopped here; the next run completes the claim, once.
    assert!(satellite(&["escrow", "claim", "all"]).contains("credited 75"));
    assert!(satellite(&[
        "escrow",
        "claim",
        "finish",
        "--channel",
        "1",
        "--nonce",
        "0"
    ])
    .contains("already finished"));
    assert!(uplink(&["channel", "status", "--channel", "1"])
        .await
        .contains("value 75 nonce 1 authorized 0"));
    // Paying on after the claim: the uplink learns the new nonce by itself.
    assert!(
        uplink(&["channel", "pay", "--channel", "1", "--kind", "get"])
            .await
            .contains("nonce 1 authorized 10")
    );
    let shown = satellite(&[
        "escrow",
        "show",
        "--account",
        &recipient.address().to_string(),
    ]);
    assert!(shown.contains("balance 75"), "{shown}");
}
