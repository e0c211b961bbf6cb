//! `orbit_kv::election` on orbit's store and on Debian's etcd alike: one leader at a
//! time, a standby takes over once the leader resigns or its lease runs out.

use orbit_kv::election::Candidate;
use orbit_kv::{Kv, RemoteKv};
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::time::{Duration, Instant};

async fn contenders(kv: &dyn Kv) {
    let key = "/test/leaders/loop";
    let a = Candidate::new(key, "a", 2);
    let b = Candidate::new(key, "b", 2);
    assert!(a.step(kv).await.unwrap(), "the first candidate wins");
    assert!(!b.step(kv).await.unwrap(), "the second stands by");
    assert_eq!(b.standing().holder.as_deref(), Some("a"));
    assert!(a.step(kv).await.unwrap(), "the holder keeps it by stepping");
    assert!(!b.step(kv).await.unwrap());
    a.resign(kv).await.unwrap();
    assert!(!a.is_leader());
    assert!(
        b.step(kv).await.unwrap(),
        "a resignation frees the key at once"
    );
    // The holder stops stepping (as if killed): its lease ends and the other takes over.
    let t = Instant::now();
    loop {
        if a.step(kv).await.unwrap() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "taken over before the TTL"
    );
    assert!(!b.step(kv).await.unwrap(), "the old holder learns it lost");
    assert_eq!(b.standing().holder.as_deref(), Some("a"));
}

#[tokio::test]
async fn one_leader_at_a_time_on_orbit() {
    let c = OrbitCluster::start(3, Timings::FAST).await;
    let kv: RemoteKv = c.remote().await;
    contenders(&kv).await;
}

#[tokio::test]
async fn one_leader_at_a_time_on_etcd() {
    let e = EtcdCluster::start(1).await;
    contenders(&e.remote().await).await;
}
