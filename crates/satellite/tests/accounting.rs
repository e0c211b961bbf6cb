//! Accounting through real processes: `api` (with the store member), `loop` and two
//! `accounting` processes beside four `storagenode` processes. Uploads and downloads
//! are settled by the nodes on their own schedule; the two accounting processes fold
//! them at once, and the report equals the settled orders exactly, and stays so;
//! the tally equals the sums over the segments; a project over its storage or
//! egress limit is refused with a clear error and accepted again when under.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::{pass, satellite, status};
use orbit_identity::NodeId;
use orbit_kv::Scan;
use orbit_satellite_model::accounting::{month_of, Bandwidth};
use orbit_satellite_model::keys;
use orbit_satellite_model::orders::Settled;
use orbit_satellite_model::unix_now;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uplink::project::Options;

/// What the satellite has settled, per node (every settled serial's record).
async fn settled(kv: &dyn orbit_kv::Kv) -> BTreeMap<NodeId, Bandwidth> {
    let mut out: BTreeMap<NodeId, Bandwidth> = BTreeMap::new();
    for kv in Scan::prefix(kv, keys::SETTLED, 1000)
        .collect()
        .await
        .unwrap()
    {
        let s: Settled = orbit_kv::record::decode(&kv.key, &kv.value).unwrap();
        out.entry(s.node).or_default().add(s.action, s.amount);
    }
    out
}

/// `satellite accounting report … --format json`, parsed.
fn report(endpoint: &str, month: &str) -> serde_json::Value {
    let out = std::process::Command::new(satellite())
        .args(["accounting", "report", "--endpoints", endpoint])
        .args(["--period", month, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each node's bandwidth in a report.
fn payouts(r: &serde_json::Value) -> BTreeMap<NodeId, Bandwidth> {
    r["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = NodeId::parse(p["node"].as_str().unwrap()).unwrap();
            let bw: Bandwidth = serde_json::from_value(p["bandwidth"].clone()).unwrap();
            (node, bw)
        })
        .collect()
}

fn project_cmd(endpoint: &str, args: &[&str]) {
    let out = std::process::Command::new(satellite())
        .args([
            "project",
            "limits",
            "--endpoints",
            endpoint,
            "--project",
            "acct",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounting_processes_count_every_settled_order_once_and_limits_hold() {
    // Replica 1: api with the store member; 2: loop; 3 and 4: accounting.
    let sat = common::network::start(
        "[loop]\ninterval_s = 3600\nleader_ttl_s = 2\n[accounting]\ninterval_s = 1\n",
        &["loop", "accounting", "accounting"],
    )
    .await;
    let endpoint = sat.r.client_url(0);
    let mut sn = StorageNodes::new();
    for _ in 0..4 {
        sn.start(&sat.url, &sat.key);
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let options = Options {
        k: 2,
        repair: 3,
        success: 4,
        total: 4,
        segment_size: 64 << 10,
        inline_max: 1024,
    };
    let (_, p) = sat.project("acct", options).await;
    p.create_bucket("bkt").await.unwrap();
    let keys = ["a", "b", "c"];
    for (i, k) in keys.iter().enumerate() {
        let data = orbit_testkit::random_bytes(150 << 10, i as u64);
        p.upload("bkt", k, &data[..], &|_| {}).await.unwrap();
    }
    for k in keys {
        for _ in 0..2 {
            let mut back = Vec::new();
            p.download("bkt", k, &mut back, &|_| {}).await.unwrap();
            assert_eq!(back.len(), 150 << 10);
        }
    }

    // The nodes settle every second, the accounting processes fold every second: the
    // report comes to what was settled, and stays there.
    let month = month_of(unix_now());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = settled(&*sat.kv).await;
        let got = payouts(&report(&endpoint, &month));
        // Every transfer settled: each download read at least the object's size
        // from the nodes, each upload stored it twice over (4 pieces of k = 2).
        let gets: u64 = want.values().map(|b| b.get).sum();
        let puts: u64 = want.values().map(|b| b.put).sum();
        if got == want && gets >= 6 * (150 << 10) && puts >= 2 * 3 * (150 << 10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "report {got:?} never came to the settled {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = report(&endpoint, &month);
    let want = settled(&*sat.kv).await;
    assert_eq!(payouts(&r), want, "counted twice?");
    let pending = Scan::prefix(&*sat.kv, keys::ACCOUNTING_ORDERS, 100)
        .collect()
        .await
        .unwrap();
    assert!(pending.is_empty(), "both accounting processes left orders");
    for i in [2, 3] {
        let s = status(sat.r.status[i]).await;
        assert!(
            s["accounting"]["last_round"]["at"].as_u64().unwrap() > 0,
            "{s}"
        );
    }
    // The project's invoice holds its egress: the Get orders, all of them its own.
    let invoices = r["invoices"].as_array().unwrap();
    let acct = invoices.iter().find(|i| i["project"] == "acct").unwrap();
    let gets: u64 = want.values().map(|b| b.get).sum();
    let puts: u64 = want.values().map(|b| b.put).sum();
    assert_eq!(acct["bandwidth"]["get"], gets, "{acct}");
    assert_eq!(acct["bandwidth"]["put"], puts, "{acct}");
    assert!(
        acct["egress"].as_u64().unwrap() == gets * 7_000_000 / 1_000_000_000_000,
        "{acct}"
    );
    // CSV too: a payout row per node and the invoice.
    let out = std::process::Command::new(satellite())
        .args([
            "accounting",
            "report",
            "--endpoints",
            &endpoint,
            "--period",
            &month,
        ])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.matches(",payout,").count(), 4, "{csv}");
    assert_eq!(csv.matches(",invoice,acct,").count(), 1, "{csv}");
    let bad = std::process::Command::new(satellite())
        .args([
            "accounting",
            "report",
            "--endpoints",
            &endpoint,
            "--period",
            "2026-13",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));

    // Storage limit: the project holds about 3 × 150 KiB; at 300 KB it is over.
    project_cmd(&endpoint, &["--storage", "300KB"]);
    let data = orbit_testkit::random_bytes(10 << 10, 99);
    let e = p
        .upload("bkt", "d", &data[..], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage limit"), "{e}");
    // Deleted, and counted so by the next tally: accepted again.
    p.delete("bkt", "a").await.unwrap();
    p.delete("bkt", "b").await.unwrap();
    assert_eq!(pass(&sat.r, 1).await["complete"], true);
    p.upload("bkt", "d", &data[..], &|_| {}).await.unwrap();

    // The tally equals the sums over the segments: "c" (remote) and "d".
    let meta = orbit_satellite_model::metainfo::Metainfo::new(sat.kv.clone());
    let tallies = orbit_satellite_model::tally::Tallies::new(sat.kv.clone());
    let last = tallies.last().await.unwrap().unwrap();
    let bucket = tallies
        .buckets()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.at == last.at && b.project == "acct")
        .unwrap();
    let objects = meta.list_objects("acct", "bkt", "", "", 0).await.unwrap();
    // "c" is the older of the two.
    let c_key = objects
        .items
        .iter()
        .min_by_key(|(_, o)| o.created)
        .map(|(k, _)| k.clone())
        .unwrap();
    let (_, segs) = meta.get_object("acct", "bkt", &c_key).await.unwrap();
    let bytes: u64 = segs.iter().map(|s| s.encrypted_size).sum();
    assert_eq!((bucket.bytes, bucket.segments), (bytes, segs.len() as u64));
    assert_eq!(bucket.objects, 1);
    let nodes: u64 = tallies
        .nodes()
        .await
        .unwrap()
        .iter()
        .filter(|n| n.at == last.at)
        .map(|n| n.bytes)
        .sum();
    let pieces: u64 = segs
        .iter()
        .map(|s| s.piece_size * s.pieces.len() as u64)
        .sum();
    assert_eq!(nodes, pieces);

    // Egress limit: below what was downloaded this month → refused; lifted → served.
    project_cmd(&endpoint, &["--storage", "none", "--egress", "1000"]);
    let mut back = Vec::new();
    let e = p
        .download("bkt", "c", &mut back, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("egress limit"), "{e}");
    project_cmd(&endpoint, &["--egress", "none"]);
    let mut back = Vec::new();
    p.download("bkt", "c", &mut back, &|_| {}).await.unwrap();
    assert_eq!(back.len(), 150 << 10);
}
