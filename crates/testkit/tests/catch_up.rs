//! A member that missed many large writes catches up through size-bounded Raft
//! messages, entry for entry.

use orbit_kv::*;
use orbit_testkit::{wait_caught_up, OrbitCluster, Timings};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_behind_by_many_large_entries_catches_up_exactly() {
    let mut c = OrbitCluster::start(3, Timings::FAST).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let behind = (leader + 1) % 3;
    c.stop(behind).await;

    // 48 entries of 256 KiB (one writer: one entry each), 12 MiB in all: several
    // size-bounded messages, each carrying a few entries.
    let kv = c.embedded(leader);
    let value = |i: usize| vec![(i % 251) as u8; 256 << 10];
    let mut rev = 0;
    for i in 0..48 {
        rev = kv
            .put(PutRequest::new(format!("big/{i:02}"), value(i)))
            .await
            .unwrap()
            .revision;
    }

    c.restart(behind).await;
    let lagging = c.embedded(behind);
    let local = |key: String| RangeRequest {
        serializable: true,
        ..RangeRequest::key(key)
    };
    wait_caught_up(&lagging, "big/", 48, rev, Duration::from_secs(30)).await;
    for i in 0..48 {
        let r = lagging.range(local(format!("big/{i:02}"))).await.unwrap();
        assert_eq!(r.kvs.len(), 1, "big/{i:02} missing");
        assert!(r.kvs[0].value == value(i), "big/{i:02} differs");
    }
}
