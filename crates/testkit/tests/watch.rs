//! Watches: progress notifications, and resuming across a leader change with no
//! event missed or repeated.

use futures::StreamExt;
use orbit_kv::*;
use orbit_testkit::{OrbitCluster, Timings};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_watch_gets_progress_notifications() {
    let c =
        OrbitCluster::start_configured(1, Timings::FAST, |cfg| cfg.watch_progress_ms = 200).await;
    let kv = c.remote().await;
    let mut w = kv
        .watch(
            b"p".to_vec(),
            WatchOptions {
                progress_notify: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let put = kv.put(PutRequest::new("p", "1")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.events.len(), 1);
    let note = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(note.events.is_empty(), "{note:?}");
    assert_eq!(note.revision, put.revision);
    // Without asking, no notifications.
    let mut quiet = kv
        .watch(b"q".to_vec(), WatchOptions::default())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), quiet.next())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_across_a_leader_change_without_gaps_or_repeats() {
    let mut c = OrbitCluster::start(3, Timings::FAST).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let other = (leader + 1) % 3;
    let start = c
        .embedded(other)
        .range(RangeRequest::key("x"))
        .await
        .unwrap()
        .revision
        + 1;

    // Writes go through a member that survives; they retry across the election.
    let writer_kv = c.embedded(other);
    let writer = tokio::spawn(async move {
        let mut done = 0;
        let mut i = 0;
        while done < 300 {
            i += 1;
            match writer_kv
                .put(PutRequest::new(format!("x/{i:04}"), "v"))
                .await
            {
                Ok(_) => done += 1,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });

    // The watcher starts on the leader, which is stopped midway; it resumes on another
    // member from the revision after the last one it saw.
    let leader_url = c.nodes[leader].as_ref().unwrap().advertised_client_url();
    let other_url = c.nodes[other].as_ref().unwrap().advertised_client_url();
    let mut revisions = Vec::new();
    let mut next = start;
    let mut url = leader_url;
    let mut stopped = false;
    while revisions.len() < 300 {
        let kv = RemoteKv::connect(&[url.clone()]).await.unwrap();
        let mut w = match kv
            .watch(
                b"x/".to_vec(),
                WatchOptions {
                    range_end: prefix_end(b"x/"),
                    start_revision: next,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(w) => w,
            Err(_) => {
                url = other_url.clone();
                continue;
            }
        };
        loop {
            let item = tokio::time::timeout(Duration::from_secs(10), w.next()).await;
            match item {
                Ok(Some(Ok(batch))) => {
                    for e in batch.events {
                        revisions.push(e.kv.mod_revision);
                        next = e.kv.mod_revision + 1;
                    }
                    if !stopped && revisions.len() >= 100 {
                        stopped = true;
                        c.stop(leader).await;
                    }
                    if revisions.len() >= 300 {
                        break;
                    }
                }
                _ => {
                    // The stream broke (its member stopped): resume elsewhere.
                    url = other_url.clone();
                    break;
                }
            }
        }
    }
    writer.await.unwrap();
    assert!(stopped, "the leader was stopped mid-watch");
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "events repeated or out of order"
    );
    // Every applied write was seen exactly once.
    let all = c
        .embedded(other)
        .range(RangeRequest::prefix("x/"))
        .await
        .unwrap();
    let applied: i64 = all.kvs.iter().map(|k| k.version).sum();
    let mut stored: Vec<i64> = all.kvs.iter().map(|k| k.mod_revision).collect();
    stored.sort();
    assert_eq!(applied as usize, stored.len(), "each key written once");
    let seen: std::collections::BTreeSet<i64> = revisions.iter().copied().collect();
    for r in &stored[..300.min(stored.len())] {
        assert!(seen.contains(r), "the put at revision {r} was missed");
    }
}
