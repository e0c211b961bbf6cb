//! Automatic compaction: the leader compacts by itself, history stays bounded under a
//! heartbeat-like load of overwrites, pins hold compaction back until released.

use orbit_kv::*;
use orbit_store::AutoCompaction;
use orbit_testkit::{OrbitCluster, Timings};
use std::time::{Duration, Instant};

/// Overwrites `keys` keys `rounds` times, as check-ins and heartbeats do.
async fn overwrite(kv: &dyn Kv, keys: usize, rounds: usize) -> i64 {
    let mut rev = 0;
    for r in 0..rounds {
        for k in 0..keys {
            rev = kv
                .put(PutRequest::new(format!("hb/{k}"), format!("{r}")))
                .await
                .unwrap()
                .revision;
        }
    }
    rev
}

async fn wait_compacted_past(c: &OrbitCluster, rev: i64) -> i64 {
    let node = c.nodes[0].clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let compacted = node.shared().read().kv.compact_revision();
        if compacted >= rev {
            return compacted;
        }
        assert!(
            Instant::now() < deadline,
            "compaction stayed at {compacted}, below {rev}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn periodic_compaction_bounds_history_under_overwrites() {
    let c = OrbitCluster::start_configured(1, Timings::FAST, |s| {
        s.auto_compaction = AutoCompaction::Periodic(Duration::from_millis(500));
    })
    .await;
    let kv = c.embedded(0);
    let node = c.nodes[0].clone().unwrap();
    let first = kv
        .put(PutRequest::new("hb/0", "start"))
        .await
        .unwrap()
        .revision;
    // Several rounds of load; after each, history older than the retention is gone.
    let mut peak = 0;
    for _ in 0..4 {
        let rev = overwrite(&kv, 10, 100).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        wait_compacted_past(&c, rev - 1).await;
        peak = peak.max(node.shared().read().kv.stored_versions());
    }
    let written = 4 * 10 * 100;
    assert!(
        peak < written / 2,
        "{peak} versions kept of {written} written: history is not bounded"
    );
    // A read below the compaction point answers as etcd does.
    let e = kv
        .range(RangeRequest {
            revision: first,
            ..RangeRequest::key("hb/0")
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::Compacted { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("required revision has been compacted"),
        "{e}"
    );
    // The current values are all there.
    let r = kv.range(RangeRequest::prefix("hb/")).await.unwrap();
    assert_eq!(r.count, 10);
    assert!(r.kvs.iter().all(|kv| kv.value == b"99"));
    drop(c);
}

#[tokio::test]
async fn a_pinned_revision_is_not_compacted_until_released() {
    let c = OrbitCluster::start_configured(3, Timings::FAST, |s| {
        s.auto_compaction = AutoCompaction::Periodic(Duration::from_millis(300));
    })
    .await;
    let kv = c.remote().await;
    overwrite(&kv, 5, 10).await;
    let lease = kv.lease_grant(30, 0).await.unwrap().id;
    let pinned = pin_revision(&kv, "pass-1", lease).await.unwrap();
    let after = overwrite(&kv, 5, 40).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    overwrite(&kv, 5, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every member holds it: reads at the pinned revision still work everywhere.
    for i in 0..3 {
        let node = c.nodes[i].clone().unwrap();
        let compacted = node.shared().read().kv.compact_revision();
        assert!(
            compacted <= pinned,
            "member {i} compacted to {compacted}, past the pin at {pinned}"
        );
    }
    let r = kv
        .range(RangeRequest {
            revision: pinned,
            ..RangeRequest::prefix("hb/")
        })
        .await
        .unwrap();
    assert_eq!(r.count, 5);
    assert!(
        c.nodes[0]
            .clone()
            .unwrap()
            .shared()
            .read()
            .kv
            .compact_revision()
            > 0
    );
    // Released (here by its lease going): compaction moves on past it.
    kv.lease_revoke(lease).await.unwrap();
    wait_compacted_past(&c, after).await;
    drop(c);
}

#[tokio::test]
async fn compaction_off_keeps_everything_and_explicit_compaction_still_works() {
    let c = OrbitCluster::start_configured(1, Timings::FAST, |s| {
        s.auto_compaction = AutoCompaction::parse("periodic", "0").unwrap();
    })
    .await;
    let kv = c.embedded(0);
    let rev = overwrite(&kv, 5, 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node = c.nodes[0].clone().unwrap();
    assert_eq!(node.shared().read().kv.compact_revision(), 0);
    assert_eq!(node.shared().read().kv.stored_versions(), 100);
    kv.compact(rev).await.unwrap();
    assert_eq!(node.shared().read().kv.stored_versions(), 5);
    drop(c);
}
