//! Data outlives the nodes that leave: a satellite split into real processes — `api`
//! (with the store member), two `loop`s, two `repair`s and `uptime` — and real
//! `storagenode` processes on loopback. Five rounds of SIGKILLing two nodes for good
//! and starting two fresh ones, each followed by a pass and repair, until none of the
//! nodes that took the original uploads is left; every object still downloads
//! byte-identical. On the way the active loop and a repair worker in mid-repair are
//! SIGKILLed too.

mod common;

use common::nodes::{wait_nodes, StorageNodes};

use common::replicas::{
    self as replicas, pass, row, satellite, status, trigger, wait_health, wait_status, Replicas,
};
use orbit_identity::{Identity, NodeId};
use orbit_kv::{Kv, RemoteKv};
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::metainfo::{Metainfo, Segment};
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::repair::{health, HealthRules};
use orbit_satellite_model::unix_now;
use orbit_testkit::free_port;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uplink::project::{Access, Options, Project};

/// Seconds without a check-in after which a node counts as offline.
const ONLINE_WINDOW_S: u64 = 3;

/// Every remote segment of every object, by object.
async fn all_segments(meta: &Metainfo, access: &Access, keys: &[String]) -> Vec<Vec<Segment>> {
    let project = "churn";
    let mut out = Vec::new();
    for k in keys {
        let enc = uplink::crypt::encrypt_path(&access.root, "churn", k);
        out.push(meta.get_object(project, "churn", &enc).await.unwrap().1);
    }
    out
}

fn counter(s: &[serde_json::Value], i: usize, what: &str) -> u64 {
    s.get(i)
        .map_or(0, |s| s["repair"][what].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_outlive_every_node_that_stored_them_through_five_rounds_of_churn() {
    // Replica 1: the api with the store member; 2, 3: loops; 4, 5: repairs; 6: uptime.
    let table: String = (1..=6)
        .map(|id| row(id, free_port(), free_port(), id == 1))
        .collect();
    let mut r = Replicas::with(
        satellite(),
        &format!(
            "[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n\
             online_window_s = {ONLINE_WINDOW_S}\n\
             [loop]\ninterval_s = 3600\nleader_ttl_s = 2\n\
             [repair]\ninterval_s = 3600\nlease_ttl_s = 2\nretry_s = 1\nmax_retry_s = 1\nconcurrency = 3\n\
             [uptime]\ninterval_s = 1\nstale_s = 2\n{table}"
        ),
        "fixed",
        6,
        "",
    );
    r.spawn(0);
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    wait_status(r.status[0], |s| s.contains("abandoned-uploads")).await;
    let sat = Identity::load_or_create(&r.dir.path().join("satellite.key")).unwrap();
    let sat_key = orbit_identity::hex_encode(&sat.public().0);
    for (i, what) in [
        (1, "loop"),
        (2, "loop"),
        (3, "repair"),
        (4, "repair"),
        (5, "uptime"),
    ] {
        r.spawn_as(i, what);
    }
    for i in 1..6 {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    let kv: Arc<dyn Kv> = Arc::new(RemoteKv::connect(&[r.client_url(0)]).await.unwrap());
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let meta = Metainfo::new(kv.clone());

    // Ten nodes take the uploads; two more join after.
    let mut sn = StorageNodes::new();
    let url = r.api_url(0);
    for _ in 0..10 {
        sn.start(&url, &sat_key);
    }
    wait_nodes(&nodes, &sn.ids.iter().copied().collect(), ONLINE_WINDOW_S).await;
    let api_key = ApiKeys::new(kv.clone()).create("churn").await.unwrap();
    let access = Access::new(&url, sat.public(), &api_key.serialize(), "churn").unwrap();
    let options = Options {
        k: 2,
        repair: 4,
        success: 6,
        total: 6,
        segment_size: 128 << 10,
        inline_max: 1024,
    };
    let p = Project::open(access.clone(), options).await.unwrap();
    p.create_bucket("churn").await.unwrap();
    let objects: Vec<(String, Vec<u8>)> = [100, 60 << 10, 300 << 10, 500 << 10]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                format!("o{i}"),
                orbit_testkit::random_bytes(n, i as u64 + 1),
            )
        })
        .collect();
    for (k, d) in &objects {
        p.upload("churn", k, &d[..], &|_| {}).await.unwrap();
    }
    let keys: Vec<String> = objects.iter().map(|o| o.0.clone()).collect();
    let originals: Vec<usize> = (0..10).collect();
    for _ in 0..2 {
        sn.start(&url, &sat_key);
    }

    let rules = HealthRules {
        online_window_s: ONLINE_WINDOW_S,
        distinct_networks: false,
    };
    let mut loops = vec![1usize, 2];
    for round in 0..5 {
        for &i in &originals[round * 2..round * 2 + 2] {
            sn.kill(i);
        }
        for _ in 0..2 {
            sn.start(&url, &sat_key);
        }
        let alive: HashSet<NodeId> = sn.alive().iter().map(|&i| sn.ids[i]).collect();
        assert_eq!(alive.len(), 12);
        wait_nodes(&nodes, &alive, ONLINE_WINDOW_S).await;

        let lead = replicas::leader(&r, "loop", &loops, Duration::from_secs(15)).await;
        if round == 1 {
            // The active loop dies: the standby takes over and runs the pass.
            r.kill(lead);
            loops.retain(|&l| l != lead);
        }
        let lead = replicas::leader(&r, "loop", &loops, Duration::from_secs(15)).await;
        let report = pass(&r, lead).await;
        assert_eq!(report["complete"], true, "round {round}: {report}");
        let checker = status(r.status[lead]).await["loop"]["repair_checker"].clone();
        assert_eq!(checker["lost"], 0, "round {round}: {checker}");
        let injured = checker["injured"].as_u64().unwrap();

        let before: Vec<serde_json::Value> = statuses(&r, &[3, 4]).await;
        if round == 2 && injured > 0 {
            // A repair worker dies in mid-repair: its claims run out with its lease
            // and the other takes the jobs over.
            let port = r.status[3];
            let started = tokio::spawn(async move {
                replicas::post(port, "/workers/repair/trigger", "replica-test").await
            });
            tokio::time::sleep(Duration::from_millis(150)).await;
            r.kill(3);
            let _ = started.await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            trigger(&r, 4, "repair").await;
            r.spawn_as(3, "repair");
            wait_health(r.status[3], 200, Duration::from_secs(30)).await;
        } else {
            // Both at once: each job is taken by one.
            let (a, b) = tokio::join!(trigger(&r, 3, "repair"), trigger(&r, 4, "repair"));
            let ((), ()) = (a, b);
            let after = statuses(&r, &[3, 4]).await;
            let repaired: u64 = (0..2)
                .map(|i| counter(&after, i, "repaired") - counter(&before, i, "repaired"))
                .sum();
            let failed: u64 = (0..2)
                .map(|i| counter(&after, i, "failed") - counter(&before, i, "failed"))
                .sum();
            assert_eq!(
                (repaired, failed),
                (injured, 0),
                "round {round}: every injured segment repaired once: {after:?}"
            );
        }

        // No segment is worse than the rules allow: none injured now.
        let now = unix_now();
        let table: std::collections::HashMap<_, _> = nodes
            .all()
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        for (k, segs) in keys.iter().zip(all_segments(&meta, &access, &keys).await) {
            for s in segs.iter().filter(|s| s.inline.is_none()) {
                let h = health(s, &table, now, &rules);
                assert!(
                    !h.injured(s),
                    "round {round}: {k} segment {} still injured: {h:?}",
                    s.index
                );
            }
        }
    }

    // None of the ten nodes that took the uploads is alive; everything comes back.
    assert!(originals.iter().all(|&i| sn.procs[i].is_none()));
    // The uptime process tried each of them and recorded the failure.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let table = nodes.all().await.unwrap();
        let untried: Vec<_> = table
            .iter()
            .filter(|n| sn.ids[..10].contains(&n.id) && n.last_contact_failure == 0)
            .collect();
        if untried.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uptime never contacted {untried:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let up = replicas::leader(&r, "uptime", &[5], Duration::from_secs(5)).await;
    assert!(status(r.status[up]).await["uptime"]["last_round"]["contacted"].is_u64());
    for (k, d) in &objects {
        let mut back = Vec::new();
        p.download("churn", k, &mut back, &|_| {}).await.unwrap();
        assert!(&back == d, "{k} came back byte-identical");
    }
}

/// The status of replicas `which` (their `/status`, null when down).
async fn statuses(r: &Replicas, which: &[usize]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for &i in which {
        let (code, body) = replicas::get(r.status[i], "/status").await;
        out.push(match code {
            200 => serde_json::from_str(&body).unwrap(),
            _ => serde_json::Value::Null,
        });
    }
    out
}
