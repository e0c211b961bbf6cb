//! etcd's Lock and Election services, the same steps against a 3-member orbit cluster
//! and a real 3-member etcd (Debian's), through etcd-client's lock and election
//! clients: a second contender gets the lock only once the first unlocks, or its
//! lease expires; a second candidate leads only once the first resigns; proclaims
//! reach observers; Observe sees each leader and value once; a stale leader key is
//! refused. The transcripts must be equal.

use etcd_client::{Client, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::time::Duration;

/// Whether `f` is still waiting after `ms`.
async fn still_waiting<T>(f: &mut tokio::task::JoinHandle<T>, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), f)
        .await
        .is_err()
}

/// The transcript, each line also printed as it comes (a hang shows where).
struct Progress(Vec<String>);

impl Progress {
    fn push(&mut self, line: String) {
        eprintln!("{line}");
        self.0.push(line);
    }
}

async fn suite(endpoints: Vec<String>) -> Vec<String> {
    let mut out = Progress(Vec::new());
    let mut c = Client::connect(endpoints, None).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();

    // Lock: the second contender waits for the first's unlock.
    let a = c.lease_grant(60, None).await.unwrap().id();
    let b = c.lease_grant(3, None).await.unwrap().id();
    let first = c
        .lock("job", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    let key_a = first.key().to_vec();
    out.push(format!("lock a: {}", text(&key_a) == format!("job/{a:x}")));
    let mut cb = c.clone();
    let mut second = tokio::spawn(async move {
        cb.lock("job", Some(LockOptions::new().with_lease(b)))
            .await
            .map(|r| r.key().to_vec())
    });
    out.push(format!(
        "b waits while a holds: {}",
        still_waiting(&mut second, 700).await
    ));
    c.unlock(key_a).await.unwrap();
    let key_b = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("b gets the lock after a's unlock")
        .unwrap()
        .unwrap();
    out.push(format!(
        "b holds after a unlocks: {}",
        text(&key_b) == format!("job/{b:x}")
    ));

    // A third waits for b, whose lease is never kept alive: it gets the lock when the
    // lease expires.
    let d = c.lease_grant(60, None).await.unwrap().id();
    let mut cd = c.clone();
    let mut third = tokio::spawn(async move {
        cd.lock("job", Some(LockOptions::new().with_lease(d)))
            .await
            .map(|r| r.key().to_vec())
    });
    out.push(format!(
        "d waits while b holds: {}",
        still_waiting(&mut third, 500).await
    ));
    let key_d = tokio::time::timeout(Duration::from_secs(15), third)
        .await
        .expect("d gets the lock once b's lease expires")
        .unwrap()
        .unwrap();
    out.push(format!(
        "d holds after b's lease ends: {}",
        text(&key_d) == format!("job/{d:x}")
    ));
    let gone = c.get(key_b.clone(), None).await.unwrap();
    out.push(format!("b's key is gone: {}", gone.kvs().is_empty()));
    c.unlock(key_d).await.unwrap();

    // Election: an observer from before there is any leader.
    // (etcd answers the call only with its first leader, so it runs on its own.)
    let mut observer = c.clone();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = observer.observe("vote").await.unwrap();
        while let Ok(Some(r)) = seen.message().await {
            if let Some(kv) = r.kv() {
                let _ = seen_tx.send(String::from_utf8_lossy(kv.value()).to_string());
            }
        }
    });
    let l1 = c.lease_grant(60, None).await.unwrap().id();
    let l2 = c.lease_grant(60, None).await.unwrap().id();
    let won = c.campaign("vote", "one", l1).await.unwrap();
    let leader1: LeaderKey = won.leader().unwrap().clone();
    out.push(format!(
        "one leads: {}",
        text(leader1.key()) == format!("vote/{l1:x}") && leader1.lease() == l1
    ));
    let now = c.leader("vote").await.unwrap();
    out.push(format!("leader is: {}", text(now.kv().unwrap().value())));
    let mut c2 = c.clone();
    let mut running = tokio::spawn(async move {
        c2.campaign("vote", "two", l2)
            .await
            .map(|r| r.leader().unwrap().clone())
    });
    out.push(format!(
        "two waits: {}",
        still_waiting(&mut running, 700).await
    ));
    c.proclaim(
        "one again",
        Some(ProclaimOptions::new().with_leader(leader1.clone())),
    )
    .await
    .unwrap();
    let stale = LeaderKey::new()
        .with_name("vote")
        .with_key(leader1.key().to_vec())
        .with_rev(leader1.rev() + 1_000)
        .with_lease(l1);
    let refused = c
        .proclaim("usurper", Some(ProclaimOptions::new().with_leader(stale)))
        .await
        .unwrap_err()
        .to_string();
    out.push(format!(
        "a stale leader's proclaim: {}",
        refused.contains("not leader")
    ));
    c.resign(Some(ResignOptions::new().with_leader(leader1)))
        .await
        .unwrap();
    let leader2 = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("two leads once one resigns")
        .unwrap()
        .unwrap();
    out.push(format!(
        "two leads: {}",
        text(leader2.key()) == format!("vote/{l2:x}")
    ));
    let now = c.leader("vote").await.unwrap();
    out.push(format!("leader is: {}", text(now.kv().unwrap().value())));
    // The observer saw each leader and value once, in order.
    let mut values = Vec::new();
    while values.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await {
            Ok(Some(v)) => values.push(v),
            _ => break,
        }
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), seen_rx.recv()).await;
    out.push(format!(
        "observed: {values:?}, then nothing: {}",
        extra.is_err()
    ));
    let none = c.leader("nobody").await.unwrap_err().to_string();
    out.push(format!("no leader: {}", none.contains("no leader")));
    out.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_and_election_services_behave_as_etcds() {
    let orbit = OrbitCluster::start(3, Timings::FAST).await;
    let ours = suite(orbit.endpoints()).await;
    let etcd = EtcdCluster::start(3).await;
    let theirs = suite(etcd.endpoints()).await;
    assert_eq!(ours, theirs, "orbit differs from etcd");
    for line in &ours {
        assert!(!line.contains("false"), "{line}\n{ours:#?}");
    }
    assert!(
        ours.iter()
            .any(|l| l.contains(r#"["one", "one again", "two"]"#)),
        "{ours:#?}"
    );
}
