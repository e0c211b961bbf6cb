//! Audits through real processes: `api` (with the store member), `loop` and two
//! `audit` processes beside eight `storagenode` processes on loopback. Honest nodes
//! pass more than a thousand audits, restarts included, without a failure; a node
//! that stops answering (SIGSTOP) is contained, reverified and cleared when it
//! answers again; a SIGKILLed node is offline, never failed; every sampled job is
//! audited once by one of the two audit processes, and a SIGKILLed audit process's
//! jobs are taken over after its lease. Last, a node that deletes its pieces and one
//! that flips bytes in them are disqualified within a bounded number of failed audits, a `repair`
//! process rebuilds their pieces elsewhere, and with both gone every object still
//! downloads identical.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::{pass, satellite, status, trigger, wait_health, Replicas};
use orbit_satellite_model::audit::{AuditQueue, ReverifyQueue};
use orbit_satellite_model::nodes::{NodeRecord, Nodes};
use std::time::{Duration, Instant};
use uplink::project::Options;

const AUDITORS: [usize; 2] = [2, 3];

/// Audit counters of the audit replicas that run, summed.
async fn totals(r: &Replicas, what: &str) -> u64 {
    let mut n = 0;
    for i in AUDITORS {
        let (code, body) = common::replicas::get(r.status[i], "/status").await;
        if code == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            n += v["audit"][what].as_u64().unwrap_or(0);
        }
    }
    n
}

/// A pass, then both audit processes drain the queues at once.
async fn round(r: &Replicas) -> serde_json::Value {
    let report = pass(r, 1).await;
    assert_eq!(report["complete"], true, "{report}");
    let (a, b) = tokio::join!(trigger(r, 2, "audit"), trigger(r, 3, "audit"));
    let ((), ()) = (a, b);
    status(r.status[1]).await["loop"]["audit_sampler"].clone()
}

async fn record(nodes: &Nodes, id: &orbit_identity::NodeId) -> NodeRecord {
    nodes.get(id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_clear_honest_slow_and_offline_nodes_and_share_jobs_between_processes() {
    // Replica 1: the api with the store member; 2: loop; 3, 4: audits; 5: repair
    // (started for the last part).
    let mut sat = common::network::start(
        "[loop]\ninterval_s = 3600\nleader_ttl_s = 2\n\
         [audit]\ninterval_s = 3600\nlease_ttl_s = 2\ntimeout_s = 2\nmax_reverify = 3\nslots = 4\nreverify_after_s = 1\n\
         [repair]\ninterval_s = 3600\nlease_ttl_s = 2\n\
         [reputation]\ninitial_alpha = 50.0\n",
        &["loop", "audit", "audit", "repair"],
    )
    .await;
    let (kv, nodes) = (sat.kv.clone(), sat.nodes.clone());
    sat.r.kill(4);
    let mut sn = StorageNodes::new();
    for _ in 0..8 {
        sn.start(&sat.url, &sat.key);
    }
    wait_nodes(&nodes, &sn.ids.iter().copied().collect(), 3600).await;
    // Repair at 4 healthy: a segment on both bad nodes below is repaired.
    let options = Options {
        k: 2,
        repair: 4,
        success: 6,
        total: 6,
        segment_size: 96 << 10,
        inline_max: 1024,
    };
    let (_, p) = sat.project("audit", options).await;
    let r = &mut sat.r;
    p.create_bucket("audit").await.unwrap();
    let mut objects = Vec::new();
    for i in 0..12u64 {
        let data = orbit_testkit::random_bytes(200 << 10, i + 1);
        p.upload("audit", &format!("o{i}"), &data[..], &|_| {})
            .await
            .unwrap();
        objects.push(data);
    }

    // Honest nodes: a thousand piece audits and more, one node restarted along the
    // way (its audits while down are offline, not failures).
    let mut rounds = 0;
    while totals(r, "success").await + totals(r, "offline").await < 1000 {
        rounds += 1;
        assert!(rounds <= 40, "too few audits after {rounds} rounds");
        if rounds == 2 {
            sn.kill(0);
        }
        if rounds == 3 {
            sn.run(0);
        }
        let before = totals(r, "segments").await;
        let sample = round(r).await;
        // Every sampled segment was audited once, by one of the two processes.
        let audited = totals(r, "segments").await - before;
        assert_eq!(audited, sample["queued"].as_u64().unwrap(), "{sample}");
    }
    assert_eq!(totals(r, "failure").await, 0);
    assert!(
        totals(r, "offline").await > 0,
        "the restarted node was never audited down"
    );
    for id in &sn.ids {
        let n = record(&nodes, id).await;
        assert!(!n.disqualified && n.reputation.audits.failure == 0, "{n:?}");
    }

    // A node that accepts connections but answers nothing is contained, reverified
    // (and still contained) while it stays silent, and cleared once it answers.
    sn.signal(1, "STOP");
    let slow = sn.ids[1];
    let reverify = ReverifyQueue::new(kv.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while reverify.get(&slow).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the silent node was never contained"
        );
        round(r).await;
    }
    // Due again after a second: the next run tries it once, and it is still silent.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (a, b) = tokio::join!(trigger(r, 2, "audit"), trigger(r, 3, "audit"));
    let ((), ()) = (a, b);
    let pending = reverify.get(&slow).await.unwrap().unwrap();
    assert_eq!(pending.attempts, 1, "{pending:?}");
    assert!(!record(&nodes, &slow).await.disqualified);
    sn.signal(1, "CONT");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (a, b) = tokio::join!(trigger(r, 2, "audit"), trigger(r, 3, "audit"));
    let ((), ()) = (a, b);
    assert!(
        reverify.get(&slow).await.unwrap().is_none(),
        "never cleared"
    );
    let n = record(&nodes, &slow).await;
    assert!(!n.disqualified && n.reputation.audits.failure == 0, "{n:?}");
    assert!(
        n.reputation.audits.contained >= 2,
        "{:?}",
        n.reputation.audits
    );

    // A node that is gone is offline at every audit: never failed, never disqualified.
    sn.kill(2);
    let gone = sn.ids[2];
    let before = record(&nodes, &gone).await.reputation.audits.offline;
    for _ in 0..3 {
        round(r).await;
    }
    let n = record(&nodes, &gone).await;
    assert!(
        n.reputation.audits.offline > before,
        "{:?}",
        n.reputation.audits
    );
    assert!(!n.disqualified && n.reputation.audits.failure == 0, "{n:?}");

    // The node sees its standing; the operator sees every node's.
    let out = std::process::Command::new(common::nodes::storagenode())
        .args(["status", "--json", "--dir"])
        .arg(sn.node_dir(1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let view = &st["satellites"][0]["stats"]["Ok"];
    assert_eq!(st["id"], slow.to_string());
    assert!(view["audit_success"].as_u64().unwrap() > 0, "{st}");
    assert!(view["audit_contained"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(view["audit_failure"], 0, "{st}");
    assert_eq!(view["contained"], false, "{st}");
    assert_eq!(view["disqualified_at"], 0, "{st}");
    let out = std::process::Command::new(satellite())
        .args([
            "inspect",
            "nodes",
            "--json",
            "--endpoints",
            &r.client_url(0),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        assert_eq!(row["disqualified"], false, "{row}");
        assert!(row["audits"]["success"].as_u64().unwrap() > 0, "{row}");
        assert!(row["audit_score"].as_f64().unwrap() > 0.99, "{row}");
    }

    // An audit process SIGKILLed with jobs in hand: they are free after its lease
    // (2 s) and the other process does them all.
    let report = pass(r, 1).await;
    assert_eq!(report["complete"], true, "{report}");
    let port = r.status[2];
    let started = tokio::spawn(async move {
        common::replicas::post(port, "/workers/audit/trigger", "replica-test").await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.kill(2);
    let _ = started.await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    trigger(r, 3, "audit").await;
    assert!(AuditQueue::new(kv.clone()).jobs().await.unwrap().is_empty());
    assert_eq!(totals(r, "failure").await, 0);

    // A node that deleted every piece and one that flipped a byte in every 16 KiB
    // group of every piece: disqualified within a bounded number of failed audits,
    // their pieces rebuilt elsewhere by the repair process.
    sn.run(2);
    r.spawn_as(2, "audit");
    r.spawn_as(4, "repair");
    for i in [2, 4] {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    let (deleter, flipper) = (sn.ids[3], sn.ids[4]);
    // The successes so far weigh α up: about α / 24 failures bring α / (α + β) to 0.96.
    let bound = |n: &NodeRecord| (n.reputation.audit.alpha / 24.0).ceil() as u64 + 1;
    let bounds = [
        bound(&record(&nodes, &deleter).await),
        bound(&record(&nodes, &flipper).await),
    ];
    let pieces = |i: usize| common::nodes::files(&sn.node_dir(i).join("storage/pieces"));
    for f in pieces(3) {
        std::fs::remove_file(f).unwrap();
    }
    for f in pieces(4) {
        let mut b = std::fs::read(&f).unwrap();
        let mut at = 1024 + 7;
        while at < b.len() {
            b[at] ^= 0x80;
            at += 16 << 10;
        }
        std::fs::write(&f, b).unwrap();
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 6, "not disqualified within 6 rounds");
        round(r).await;
        let (d, f) = (
            record(&nodes, &deleter).await,
            record(&nodes, &flipper).await,
        );
        if d.disqualified && f.disqualified {
            for (n, most) in [(&d, bounds[0]), (&f, bounds[1])] {
                let why = &n.reputation.disqualified_reason;
                let failed: u64 = why
                    .split("after ")
                    .nth(1)
                    .and_then(|w| w.split(' ').next())
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(u64::MAX);
                assert!(failed <= most, "{why}: more than {most} failures");
            }
            break;
        }
    }
    for (i, id) in sn.ids.iter().enumerate() {
        if i != 3 && i != 4 {
            let n = record(&nodes, id).await;
            assert!(!n.disqualified && n.reputation.audits.failure == 0, "{n:?}");
        }
    }
    let report = pass(r, 1).await;
    assert_eq!(report["complete"], true, "{report}");
    trigger(r, 4, "repair").await;
    let repaired = status(r.status[4]).await["repair"]["repaired"]
        .as_u64()
        .unwrap();
    assert!(repaired > 0, "nothing repaired");
    sn.kill(3);
    sn.kill(4);
    for (i, data) in objects.iter().enumerate() {
        let mut back = Vec::new();
        p.download("audit", &format!("o{i}"), &mut back, &|_| {})
            .await
            .unwrap();
        assert!(back == *data, "object {i} differs");
    }
}
