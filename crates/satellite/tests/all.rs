//! `satellite run all`: every process in one OS process on one replica. With real
//! storage nodes it stores and serves data, runs loop passes with their observers,
//! repairs around a node killed for good, rolls the nodes' settlements up, shows
//! every process's status on its one endpoint, and stops cleanly on SIGTERM.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::{row, satellite, status, trigger, wait_health, Replicas};
use orbit_kv::{Kv, RemoteKv};
use orbit_testkit::free_port;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uplink::project::{Access, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_the_whole_satellite() {
    let table = row(1, free_port(), free_port(), true);
    let sections = "[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n\
         online_window_s = 3\n\
         [loop]\ninterval_s = 3600\n[repair]\ninterval_s = 3600\n[accounting]\ninterval_s = 3600\n\
         [uptime]\ninterval_s = 3600\n[audit]\ninterval_s = 3600\n[gc]\ninterval_s = 3600\n";
    let mut r = Replicas::with(satellite(), &format!("{sections}{table}"), "fixed", 1, "");
    r.spawn_as(0, "all");
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    let s = status(r.status[0]).await;
    for section in [
        "loop",
        "repair",
        "uptime",
        "audit",
        "gc",
        "accounting",
        "version",
    ] {
        assert!(!s[section].is_null(), "no {section} in {s}");
    }
    for process in ["api", "loop", "repair", "accounting"] {
        assert_eq!(s["version"][process]["allowed"], true, "{s}");
    }

    let identity =
        orbit_identity::Identity::load_or_create(&r.dir.path().join("satellite.key")).unwrap();
    let key = orbit_identity::hex_encode(&identity.public().0);
    let kv: Arc<dyn Kv> = Arc::new(RemoteKv::connect(&[r.client_url(0)]).await.unwrap());
    let nodes = orbit_satellite_model::nodes::Nodes::new(kv.clone(), Default::default());
    let mut sn = StorageNodes::new();
    for _ in 0..5 {
        sn.start(&r.api_url(0), &key);
    }
    wait_nodes(&nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let api_key = orbit_satellite_model::apikeys::ApiKeys::new(kv.clone())
        .create("all")
        .await
        .unwrap();
    let access = Access::new(
        &r.api_url(0),
        identity.public(),
        &api_key.serialize(),
        "all",
    )
    .unwrap();
    let options = common::small_options(2, 3, 4);
    let p = Project::open(access.clone(), options).await.unwrap();
    p.create_bucket("bkt").await.unwrap();
    let data = orbit_testkit::random_bytes(200 << 10, 3);
    p.upload("bkt", "x", &data[..], &|_| {}).await.unwrap();

    // A node that held pieces dies for good: a pass queues its segments, repair
    // rebuilds them on the fifth node.
    let meta = orbit_satellite_model::metainfo::Metainfo::new(kv.clone());
    let enc = uplink::crypt::encrypt_path(&access.root, "bkt", "x");
    let (_, segs) = meta.get_object("all", "bkt", &enc).await.unwrap();
    let victim = segs[0].pieces[0].1;
    let i = sn.ids.iter().position(|id| *id == victim).unwrap();
    sn.kill(i);
    tokio::time::sleep(Duration::from_secs(4)).await;
    trigger(&r, 0, "segment-loop").await;
    let pass = status(r.status[0]).await["loop"]["last_pass"].clone();
    assert_eq!(pass["complete"], true, "{pass}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        trigger(&r, 0, "repair").await;
        let (_, segs) = meta.get_object("all", "bkt", &enc).await.unwrap();
        if segs
            .iter()
            .all(|s| s.pieces.len() == 4 && s.pieces.iter().all(|(_, n)| *n != victim))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never repaired around the dead node"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut back = Vec::new();
    p.download("bkt", "x", &mut back, &|_| {}).await.unwrap();
    assert!(back == data);

    // The nodes settle every second; accounting rolls it up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        trigger(&r, 0, "accounting").await;
        let r = status(r.status[0]).await["accounting"]["last_round"].clone();
        if r["orders"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing settled was rolled up: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // SIGTERM: every part stops, and the process exits cleanly.
    let exit = r.terminate(0, Duration::from_secs(20)).expect("it stops");
    assert!(exit.success(), "{exit:?}: {}", r.log(0));
}
