//! Mode incremental: replicas grow, shrink and heal their store cluster themselves.
//! Separate `satellite run api` processes on loopback, killed with SIGKILL.

mod common;

use common::replicas::{get, row, satellite, wait_health, Replicas};
use orbit_kv::{Kv, PutRequest, RemoteKv};
use orbit_replica::table::number_of_nodes;
use orbit_testkit::free_port;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Incremental settings for tests: a learner gets 4 s, a dead member goes after 1.5 s.
const INCREMENTAL: &str = "learner_timeout_ms = 4000\nmember_dead_ms = 1500\n";

/// A table of `n` replicas with fresh ports.
fn table(n: usize) -> String {
    (1..=n)
        .map(|id| row(id, free_port(), free_port(), false))
        .collect()
}

async fn status(port: u16) -> Option<Value> {
    let (code, body) = get(port, "/status").await;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// What one replica's status says about the cluster.
#[derive(Debug)]
struct View {
    /// Members: name and whether a learner.
    members: Vec<(String, bool)>,
    /// Live replica ids in the table.
    live: BTreeSet<u64>,
    /// Replica ids whose last heartbeat says they run a store node.
    flagged: BTreeSet<u64>,
}

fn view(s: &Value) -> Option<View> {
    let members = s["members"]
        .as_array()?
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["learner"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    let rows = s["replicas"].as_array()?;
    let ids = |f: &dyn Fn(&Value) -> bool| {
        rows.iter()
            .filter(|r| f(r))
            .filter_map(|r| r["id"].as_u64())
            .collect::<BTreeSet<u64>>()
    };
    Some(View {
        members,
        live: ids(&|r| r["live"].as_bool() == Some(true)),
        flagged: ids(&|r| {
            r["live"].as_bool() == Some(true) && r["store_node"].as_bool() == Some(true)
        }),
    })
}

/// Whether the cluster has settled for the running replicas `live` (indices): exactly
/// `number_of_nodes` voters, all of live replicas, no learner, flags in step.
fn settled(v: &View, live: &BTreeSet<usize>) -> bool {
    let want_live: BTreeSet<u64> = live.iter().map(|i| *i as u64 + 1).collect();
    let want = number_of_nodes(live.len(), 5);
    let names: BTreeSet<String> = want_live.iter().map(|id| format!("n{id}")).collect();
    v.live == want_live
        && v.members.len() == want
        && v.members
            .iter()
            .all(|(name, learner)| !learner && names.contains(name))
        && v.flagged.len() == want
        && v.flagged
            .iter()
            .all(|id| v.members.iter().any(|(name, _)| *name == format!("n{id}")))
}

/// Waits until every running replica's view has settled; returns how long it took.
async fn wait_settled(r: &Replicas, limit: Duration) -> Duration {
    let live: BTreeSet<usize> = (0..r.status.len()).filter(|i| r.running(*i)).collect();
    let start = Instant::now();
    loop {
        let mut all = true;
        let mut last = None;
        for &i in &live {
            let s = status(r.status[i]).await;
            let v = s.as_ref().and_then(view);
            // The replica's own word on its member agrees with the table (a replica
            // just restarted may still have its previous life's row).
            let votes = s
                .as_ref()
                .is_some_and(|s| s["store_member"]["learner"].as_bool() == Some(false));
            let ok = v
                .as_ref()
                .is_some_and(|v| settled(v, &live) && v.flagged.contains(&(i as u64 + 1)) == votes);
            all &= ok;
            if !ok {
                last = Some((i + 1, v));
                break;
            }
        }
        if all {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the cluster did not settle for replicas {:?} within {limit:?}; replica {:?}",
            live.iter().map(|i| i + 1).collect::<Vec<_>>(),
            last
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client of the cluster through every row's client URL, following the members.
async fn client(r: &Replicas) -> RemoteKv {
    let urls: Vec<String> = (0..r.clients.len()).map(|i| r.client_url(i)).collect();
    let kv = RemoteKv::connect(&urls).await.unwrap();
    kv.follow_members(Duration::from_millis(500));
    kv
}

/// Puts, retrying while the cluster is busy changing (a put that failed is retried
/// with the same value, so a doubtful first attempt does no harm).
async fn put(kv: &RemoteKv, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match kv.put(PutRequest::new(key, value)).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "put {key}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read(kv: &RemoteKv, key: &str) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match kv.get(key.as_bytes()).await {
            Ok(v) => return v.map(|kv| kv.value),
            Err(e) => assert!(Instant::now() < deadline, "get {key}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_started_one_at_a_time_grow_the_cluster_1_1_3_3_5() {
    let mut r = Replicas::with(satellite(), &table(5), "incremental", 5, INCREMENTAL);
    let mut kv = None;
    for (i, expected) in [1, 1, 3, 3, 5].into_iter().enumerate() {
        r.spawn(i);
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
        let took = wait_settled(&r, Duration::from_secs(40)).await;
        if i == 1 {
            // Two replicas need one store node: the second must not start one.
            tokio::time::sleep(Duration::from_secs(2)).await;
            wait_settled(&r, Duration::from_millis(1)).await;
        }
        let v = loop {
            if let Some(v) = status(r.status[0]).await.as_ref().and_then(view) {
                break v;
            }
        };
        assert_eq!(v.members.len(), expected, "{v:?}");
        eprintln!(
            "{} replicas: {} store nodes after {took:?}",
            i + 1,
            expected
        );
        let kv = match &kv {
            Some(kv) => kv,
            None => kv.insert(client(&r).await),
        };
        put(kv, &format!("step/{i}"), &format!("v{i}")).await;
        for j in 0..=i {
            assert_eq!(
                read(kv, &format!("step/{j}")).await,
                Some(format!("v{j}").into_bytes()),
                "data written at step {j} lost by step {i}"
            );
        }
    }
    // Only the first replica ever created a cluster.
    for i in 1..5 {
        assert!(
            !r.log(i).contains("creating a one-member cluster"),
            "replica {} bootstrapped",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_started_at_the_same_instant_form_exactly_one_cluster() {
    let rounds: usize = std::env::var("ORBIT_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        let mut r = Replicas::with(satellite(), &table(5), "incremental", 5, INCREMENTAL);
        for i in 0..5 {
            r.spawn(i);
        }
        let took = wait_settled(&r, Duration::from_secs(60)).await;
        // One cluster: every replica runs a member, all see the same members and the
        // same leader, and exactly one replica created a cluster.
        let mut ids = BTreeSet::new();
        let mut leaders = BTreeSet::new();
        let mut lists = BTreeSet::new();
        for i in 0..5 {
            let s = status(r.status[i]).await.unwrap();
            ids.insert(s["store_member"]["id"].as_str().unwrap().to_string());
            leaders.insert(s["store_member"]["leader"].as_str().unwrap().to_string());
            let mut list: Vec<String> = s["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            list.sort();
            lists.insert(list);
        }
        assert_eq!(ids.len(), 5, "round {round}: {ids:?}");
        assert_eq!(
            lists.len(),
            1,
            "round {round}: member lists differ: {lists:?}"
        );
        assert_eq!(
            lists
                .first()
                .unwrap()
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
            ids,
            "round {round}"
        );
        assert_eq!(leaders.len(), 1, "round {round}: leaders {leaders:?}");
        let creators = (0..5)
            .filter(|i| r.log(*i).contains("creating a one-member cluster"))
            .count();
        assert_eq!(creators, 1, "round {round}");
        eprintln!("round {round}: one cluster of 5 after {took:?}");
    }
}

/// Records every (term, leader) a running member reports, failing on two leaders in
/// one term.
fn watch_leaders(ports: Vec<u16>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<u64, String> = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            for &p in &ports {
                let Some(s) = status(p).await else { continue };
                let m = &s["store_member"];
                let (Some(term), Some(leader)) = (m["term"].as_u64(), m["leader"].as_str()) else {
                    continue;
                };
                if leader == "0" {
                    continue;
                }
                let first = seen.entry(term).or_insert_with(|| leader.to_string());
                assert_eq!(first, leader, "two leaders in term {term}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen.len()
    })
}

/// The running replica whose store member leads.
async fn leader_replica(r: &Replicas) -> Option<usize> {
    for i in (0..r.status.len()).filter(|i| r.running(*i)) {
        let s = status(r.status[i]).await?;
        let m = &s["store_member"];
        if m["id"].is_string() && m["id"] == m["leader"] {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_kills_and_restarts_keep_the_cluster_sized_and_every_write() {
    let seed: u64 = std::env::var("ORBIT_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("schedule seed {seed} (ORBIT_TEST_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut r = Replicas::with(satellite(), &table(5), "incremental", 5, INCREMENTAL);
    for i in 0..5 {
        r.spawn(i);
    }
    wait_settled(&r, Duration::from_secs(60)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let leaders = watch_leaders(r.status.clone(), stop.clone());
    let kv = Arc::new(client(&r).await);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (kv, acked, stop) = (kv.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w/{n:06}");
                // A failed put may or may not have applied; only acknowledged ones count.
                if kv.put(PutRequest::new(key.clone(), "x")).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let steps: usize = std::env::var("ORBIT_TEST_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut killed_leader = false;
    for step in 0..steps {
        let live: Vec<usize> = (0..5).filter(|i| r.running(*i)).collect();
        let dead: Vec<usize> = (0..5).filter(|i| !r.running(*i)).collect();
        let kill = live.len() == 5 || (live.len() > 2 && rng.gen_bool(0.5));
        if kill {
            // The first kill takes the leader's replica, so coordination moves too.
            let leader = match killed_leader {
                false => leader_replica(&r).await,
                true => None,
            };
            let i = leader.unwrap_or_else(|| live[rng.gen_range(0..live.len())]);
            killed_leader |= leader.is_some();
            r.kill(i);
            eprintln!(
                "step {step}: killed replica {}{}",
                i + 1,
                if leader.is_some() {
                    " (the leader's)"
                } else {
                    ""
                }
            );
        } else {
            let i = dead[rng.gen_range(0..dead.len())];
            r.spawn(i);
            eprintln!("step {step}: restarted replica {}", i + 1);
        }
        let took = wait_settled(&r, Duration::from_secs(60)).await;
        eprintln!(
            "  settled at {} store nodes for {} live replicas after {took:?}",
            number_of_nodes((0..5).filter(|i| r.running(*i)).count(), 5),
            (0..5).filter(|i| r.running(*i)).count()
        );
    }
    assert!(
        killed_leader,
        "the schedule never killed the leader's replica"
    );
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let terms = leaders.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for key in &acked {
        assert_eq!(
            read(&kv, key).await,
            Some(b"x".to_vec()),
            "acknowledged write {key} lost"
        );
    }
    eprintln!(
        "{} acknowledged writes all present; {terms} terms observed, one leader each",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_that_cannot_catch_up_is_removed_and_the_next_replica_tries() {
    // Replica 2's member listens on another peer port than the table gives the others,
    // as if a firewall blocked it: the leader can never reach it.
    let (c2, p2, p2_real) = (free_port(), free_port(), free_port());
    let table = format!(
        "{}{}{}",
        row(1, free_port(), free_port(), false),
        row(2, c2, p2, false),
        row(3, free_port(), free_port(), false)
    );
    let mut r = Replicas::with(satellite(), &table, "incremental", 3, INCREMENTAL);
    let own = std::fs::read_to_string(r.config())
        .unwrap()
        .replace(&format!("127.0.0.1:{p2}"), &format!("127.0.0.1:{p2_real}"));
    r.set_config(1, &own);
    r.spawn(0);
    wait_settled(&r, Duration::from_secs(30)).await;
    r.spawn(1);
    r.spawn(2);
    // Replica 2 (lowest id without a member) is tried first and fails; then replica 3
    // joins and becomes a voter.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = status(r.status[2]).await;
        let voter = s
            .as_ref()
            .is_some_and(|s| s["store_member"]["learner"].as_bool() == Some(false));
        if voter {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 3 never became a voter: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let coordinator = r.log(0);
    let removed = coordinator
        .find("learner did not catch up in time")
        .expect("the coordinator removed the stuck learner");
    let added: Vec<usize> = coordinator
        .match_indices("added a learner")
        .map(|(at, _)| at)
        .collect();
    assert!(added.len() >= 2, "{coordinator}");
    assert!(
        coordinator[added[0]..]
            .lines()
            .next()
            .unwrap()
            .contains("replica=2"),
        "{coordinator}"
    );
    assert!(
        coordinator[added[1]..]
            .lines()
            .next()
            .unwrap()
            .contains("replica=3")
            && added[1] > removed,
        "replica 3 was tried after replica 2's learner was removed: {coordinator}"
    );
    // Replica 2 stopped its member too — by its own learner timeout, or on finding
    // the cluster no longer lists it, whichever it saw first — and is not a voter.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !r.log(1).contains("stopping this replica's store member") {
        assert!(Instant::now() < deadline, "{}", r.log(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = status(r.status[0]).await.unwrap();
    let names: Vec<&str> = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["learner"].as_bool() == Some(false))
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&"n1") && names.contains(&"n3") && !names.contains(&"n2"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_dir_that_belonged_to_a_cluster_never_creates_another() {
    let mut r = Replicas::with(satellite(), &table(3), "incremental", 3, INCREMENTAL);
    r.spawn(0);
    wait_settled(&r, Duration::from_secs(30)).await;
    r.kill(0);
    // Its member retired, as when the cluster removes it: the data dir keeps the record.
    std::fs::rename(
        r.data_dir(0).join("store"),
        r.data_dir(0).join("store.retired"),
    )
    .unwrap();
    r.spawn(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.log(0).contains("never creates one") {
        assert!(Instant::now() < deadline, "{}", r.log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r.log(0).matches("creating a one-member cluster").count(), 1);
    wait_health(r.status[0], 503, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_member_data_gets_a_new_member() {
    let mut r = Replicas::with(satellite(), &table(3), "incremental", 3, INCREMENTAL);
    for i in 0..3 {
        r.spawn(i);
    }
    wait_settled(&r, Duration::from_secs(60)).await;
    let before = status(r.status[1]).await.unwrap()["store_member"]["id"].clone();
    let kv = client(&r).await;
    put(&kv, "kept", "yes").await;
    // Replica 2 comes back with its member's data gone (a replaced disk).
    r.kill(1);
    std::fs::remove_dir_all(r.data_dir(1).join("store")).unwrap();
    r.spawn(1);
    wait_settled(&r, Duration::from_secs(60)).await;
    let after = status(r.status[1]).await.unwrap()["store_member"]["id"].clone();
    assert!(after.is_string() && after != before, "{before} → {after}");
    assert_eq!(read(&kv, "kept").await, Some(b"yes".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_default_timings_dead_voters_go_before_any_healthy_one() {
    // The shipped defaults: replica leases (5 s) run out before members count as dead
    // (10 s), so the cluster's required size drops while both dead members still vote.
    let mut r = Replicas::timed(satellite(), &table(5), "incremental", 5, "");
    for i in 0..5 {
        r.spawn(i);
    }
    wait_settled(&r, Duration::from_secs(120)).await;
    r.kill(1);
    r.kill(2);
    let healthy = ["n1", "n4", "n5"];
    let live = BTreeSet::from([0usize, 3, 4]);
    let start = Instant::now();
    let mut views = 0;
    loop {
        for &i in &live {
            let Some(v) = status(r.status[i]).await.as_ref().and_then(view) else {
                continue;
            };
            views += 1;
            for name in healthy {
                assert!(
                    v.members.iter().any(|(n, learner)| n == name && !learner),
                    "healthy member {name} stopped voting after {:?} (replica {}'s view: {v:?})",
                    start.elapsed(),
                    i + 1
                );
            }
        }
        if all_settled(&r, &live).await {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the cluster did not shrink to its live members within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(views > 10, "too few status views observed: {views}");
    eprintln!("shrank to n1, n4, n5 after {:?}", start.elapsed());
    let kv = client(&r).await;
    put(&kv, "after/shrink", "ok").await;
    assert_eq!(read(&kv, "after/shrink").await, Some(b"ok".to_vec()));
}

/// Whether every live replica's view has settled, now.
async fn all_settled(r: &Replicas, live: &BTreeSet<usize>) -> bool {
    for &i in live {
        let ok = status(r.status[i])
            .await
            .as_ref()
            .and_then(view)
            .is_some_and(|v| settled(&v, live));
        if !ok {
            return false;
        }
    }
    true
}
