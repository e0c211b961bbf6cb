//! Crash safety with real processes and SIGKILL: every acknowledged write survives the
//! crash of any member, or of all members, and no write is applied twice.

mod common;

use common::*;
use orbit_kv::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writers putting unique keys (value = key) until stopped; records the acknowledged.
struct Load {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(kv: RemoteKv, writers: usize) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = (0..writers)
            .map(|w| {
                let kv = kv.clone();
                let acked = acked.clone();
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    while !*rx.borrow() {
                        seq += 1;
                        let key = format!("w/{w}/{seq:08}");
                        let put = kv.put(PutRequest::new(key.clone(), key.clone()));
                        match tokio::time::timeout(Duration::from_secs(3), put).await {
                            Ok(Ok(_)) => acked.lock().unwrap().push((key, Instant::now())),
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    async fn finish(self) -> Vec<(String, Instant)> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// Every acknowledged key is there with its value; no key was written twice.
async fn verify(c: &ProcCluster, acked: &[(String, Instant)]) {
    c.wait_writable(Duration::from_secs(30)).await;
    let kv = c.client().await;
    let mut all = None;
    for _ in 0..50 {
        match kv.range(RangeRequest::prefix("w/")).await {
            Ok(r) => {
                all = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let all = all.expect("reading back the writes");
    let stored: BTreeMap<Vec<u8>, KeyValue> =
        all.kvs.into_iter().map(|k| (k.key.clone(), k)).collect();
    assert!(!acked.is_empty(), "the load wrote nothing");
    for (key, _) in acked {
        let kv = stored
            .get(key.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
        assert_eq!(kv.value, key.as_bytes());
    }
    for kv in stored.values() {
        assert_eq!(
            kv.version,
            1,
            "{:?} applied more than once",
            String::from_utf8_lossy(&kv.key)
        );
    }
    eprintln!(
        "{} acknowledged writes, {} stored, all intact",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_each_member_in_turn_during_writes() {
    let mut c = common::start(3).await;
    let load = Load::start(c.client().await, 8);
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.kill(i);
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.spawn(i);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let acked = load.finish().await;
    verify(&c, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_all_members_during_writes() {
    let mut c = common::start(3).await;
    let load = Load::start(c.client().await, 8);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..3 {
        c.kill(i);
    }
    let acked = load.finish().await;
    for i in 0..3 {
        c.spawn(i);
    }
    verify(&c, &acked).await;
    // And the cluster takes writes again.
    c.client()
        .await
        .put(PutRequest::new("after", "restart"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_under_load() {
    let mut c = common::start(3).await;
    let load = Load::start(c.client().await, 8);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let leader = c.leader().await.expect("a leader");
    let killed_at = Instant::now();
    c.kill(leader);
    // Writes resume once a new leader is elected: a liveness bound, generous on purpose
    // (ten election timeouts); the measured time is printed.
    let deadline = killed_at + Duration::from_secs(10);
    let resumed = loop {
        let after: Vec<Instant> = load
            .acked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| *t > killed_at + Duration::from_millis(50))
            .collect();
        if let Some(t) = after.first() {
            break *t;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged within 10 s of killing the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "writes resumed {:?} after the leader was killed",
        resumed - killed_at
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.spawn(leader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = load.finish().await;
    verify(&c, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_member_catches_up_from_a_snapshot() {
    let mut c = common::start(3).await;
    c.kill(2);
    c.wait_writable(Duration::from_secs(10)).await;
    // More log entries than the snapshot interval (2000), so the leader's log is
    // purged past what member 2 has and it must install a snapshot. One writer, so
    // each write is its own entry (concurrent writes would share entries).
    let kv = c.client_of(0).await;
    for i in 0..2600 {
        kv.put(PutRequest::new(format!("s/{i:05}"), "v"))
            .await
            .unwrap();
    }
    let rev = kv
        .range(RangeRequest::key("s/02599"))
        .await
        .unwrap()
        .revision;
    c.spawn(2);
    let lagging = c.client_of(2).await;
    orbit_testkit::wait_caught_up(&lagging, "s/", 2600, rev, Duration::from_secs(30)).await;
    assert!(
        std::fs::metadata(c.dir.path().join("m2/raft/snapshot")).is_ok(),
        "member 2 caught up through a snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_lost_for_good_recovers_with_force_new_cluster() {
    let mut c = common::start(3).await;
    let kv = c.client().await;
    for i in 0..100 {
        kv.put(PutRequest::new(format!("keep/{i:03}"), "v"))
            .await
            .unwrap();
    }
    // The member's data dir is locked while it runs: recovery refuses.
    let data_dir = c.dir.path().join("m0");
    let run = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_satellite"))
            .args(["storage", "force-new-cluster", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = run(&data_dir);
    assert!(
        !out.status.success(),
        "recovery must refuse a running member"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));

    // Quorum lost for good: every member is gone; only m0's data dir is left.
    for i in 0..3 {
        c.kill(i);
    }
    let out = run(&data_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.spawn(0);
    let alone = c.client_of(0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if alone
            .put(PutRequest::new("after", "recovery"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovered member never took writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = alone.range(RangeRequest::prefix("keep/")).await.unwrap();
    assert_eq!(
        r.count, 100,
        "every acknowledged write survived the recovery"
    );
    let members = alone.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");

    // The recovery holds across further restarts: the forced membership is in the log.
    c.kill(0);
    c.spawn(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if alone.put(PutRequest::new("after", "restart")).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovered member lost its cluster on restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = alone.range(RangeRequest::prefix("keep/")).await.unwrap();
    assert_eq!(r.count, 100);
    assert_eq!(alone.members().await.unwrap().len(), 1);
}
