//! A remote client that follows the member list keeps working when the member it
//! was given goes away.

use orbit_kv::*;
use orbit_testkit::{OrbitCluster, Timings};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_follows_membership_and_survives_its_first_member() {
    let mut c = OrbitCluster::start(3, Timings::FAST).await;
    let first = c.endpoints()[0].clone();
    let kv = RemoteKv::connect(std::slice::from_ref(&first))
        .await
        .unwrap();
    kv.follow_members(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.endpoints().await.len() < 3 {
        assert!(Instant::now() < deadline, "never learned the other members");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all = kv.endpoints().await;
    all.sort();
    let mut want = c.endpoints();
    want.sort();
    assert_eq!(all, want);

    // The member it was given stops; requests go to the others.
    c.stop(0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok_in_a_row = 0;
    while ok_in_a_row < 20 {
        match kv.put(PutRequest::new("k", "v")).await {
            Ok(_) => ok_in_a_row += 1,
            Err(_) => ok_in_a_row = 0,
        }
        assert!(
            Instant::now() < deadline,
            "requests kept failing after one member stopped"
        );
    }
}
