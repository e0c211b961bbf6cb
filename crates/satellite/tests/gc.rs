//! Garbage collection through real processes: `api` (with the store member), `loop`
//! and `gc` beside four `storagenode` processes. After objects are deleted and
//! overwritten, two passes and the gc process's round leave every node holding
//! exactly the live pieces; a node SIGKILLed after it stored its filter but before it
//! applied it applies it when it starts again; `satellite trash restore` brings the
//! garbage back. Expired objects vanish at once and nodes delete their pieces by
//! themselves.

mod common;

use common::nodes::{files, wait_nodes, StorageNodes};
use common::replicas::{pass, satellite, trigger};
use orbit_identity::NodeId;
use orbit_protocol::PieceId;
use orbit_satellite_model::metainfo::Metainfo;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use uplink::project::{Access, Options};

/// The pieces node `i` holds (not its trash).
fn held(sn: &StorageNodes, i: usize) -> HashSet<PieceId> {
    files(&sn.node_dir(i).join("storage/pieces"))
        .iter()
        .filter_map(|p| {
            let hex = p.file_name()?.to_str()?.strip_suffix(".piece")?;
            let b = orbit_identity::hex_decode(hex).ok()?;
            Some(PieceId(b.try_into().ok()?))
        })
        .collect()
}

/// The pieces the satellite's segments place on each node.
async fn live(meta: &Metainfo, access: &Access, keys: &[&str]) -> HashSet<(NodeId, PieceId)> {
    let mut out = HashSet::new();
    for k in keys {
        let enc = uplink::crypt::encrypt_path(&access.root, "gc-test", k);
        for s in meta.get_object("gc", "gc-test", &enc).await.unwrap().1 {
            for &(num, node) in &s.pieces {
                out.insert((node, s.root.derive(&node, num)));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_data_leaves_real_nodes_and_a_node_killed_before_applying_finishes_at_start() {
    // Replica 1: the api with the store member; 2: loop; 3: gc.
    let sat = common::network::start(
        "[loop]\ninterval_s = 3600\nleader_ttl_s = 2\n[gc]\ninterval_s = 3600\nleader_ttl_s = 2\n",
        &["loop", "gc"],
    )
    .await;
    let meta = Metainfo::new(sat.kv.clone());
    let mut sn = StorageNodes::new();
    // Nodes 0-2 apply filters every second; node 3 only at start.
    for i in 0..4 {
        let every = if i == 3 { 3600 } else { 1 };
        sn.start_with(
            &sat.url,
            &sat.key,
            &format!("retain_skew_s = 1\nretain_interval_s = {every}"),
        );
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let options = Options {
        k: 2,
        repair: 3,
        success: 4,
        total: 4,
        segment_size: 64 << 10,
        inline_max: 1024,
    };
    let (access, p) = sat.project("gc", options).await;
    let r = &sat.r;
    p.create_bucket("gc-test").await.unwrap();
    for k in ["keep", "gone", "over"] {
        let data = orbit_testkit::random_bytes(150 << 10, k.len() as u64);
        p.upload("gc-test", k, &data[..], &|_| {}).await.unwrap();
    }
    // The first pass counts every node's pieces.
    assert_eq!(pass(r, 1).await["complete"], true);
    // Garbage is more than the nodes' skew (1 s) older than the newest segment when
    // it is committed; times are whole seconds, so with a margin.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    p.delete("gc-test", "gone").await.unwrap();
    let over = orbit_testkit::random_bytes(90 << 10, 9);
    p.upload("gc-test", "over", &over[..], &|_| {})
        .await
        .unwrap();
    let before: usize = (0..4).map(|i| held(&sn, i).len()).sum();

    // The second pass builds the filters, the gc process hands them out.
    let report = pass(r, 1).await;
    assert_eq!(report["complete"], true, "{report}");
    trigger(r, 2, "gc").await;
    let sent = common::replicas::status(r.status[2]).await["gc"]["last_round"].clone();
    assert_eq!(sent["sent"], 4, "{sent}");
    // Node 3 stored its filter but applies only at start: it dies first.
    sn.kill(3);
    sn.run(3);

    let want = live(&meta, &access, &["keep", "over"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut exact = true;
        for i in 0..4 {
            let h = held(&sn, i);
            let w: HashSet<PieceId> = want
                .iter()
                .filter(|(n, _)| *n == sn.ids[i])
                .map(|(_, p)| *p)
                .collect();
            assert!(w.is_subset(&h), "node {i} lost a live piece");
            exact &= h == w;
        }
        if exact {
            break;
        }
        // A 10% false-positive rate may keep a garbage piece a pass longer.
        assert!(Instant::now() < deadline, "garbage left on the nodes");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if Instant::now() + Duration::from_secs(20) > deadline {
            assert_eq!(pass(r, 1).await["complete"], true);
            trigger(r, 2, "gc").await;
        }
    }
    let after: usize = (0..4).map(|i| held(&sn, i).len()).sum();
    assert!(after < before, "{after} pieces of {before} left");
    let mut back = Vec::new();
    p.download("gc-test", "over", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == over);
    let mut back = Vec::new();
    p.download("gc-test", "keep", &mut back, &|_| {})
        .await
        .unwrap();
    assert_eq!(back.len(), 150 << 10);

    // The operator restores every node's trash: the garbage is back on the nodes.
    let out = std::process::Command::new(satellite())
        .args([
            "trash",
            "restore",
            "--endpoints",
            &r.client_url(0),
            "--identity",
        ])
        .arg(r.dir.path().join("satellite.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored: usize = (0..4).map(|i| held(&sn, i).len()).sum();
    assert_eq!(restored, before, "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_objects_vanish_at_once_and_leave_real_nodes_by_themselves() {
    // Replica 1: the api with the store member; 2: loop.
    let sat =
        common::network::start("[loop]\ninterval_s = 3600\nleader_ttl_s = 2\n", &["loop"]).await;
    let mut sn = StorageNodes::new();
    for _ in 0..3 {
        sn.start_with(&sat.url, &sat.key, "retain_interval_s = 1");
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let options = Options {
        k: 2,
        repair: 2,
        success: 3,
        total: 3,
        segment_size: 64 << 10,
        inline_max: 1024,
    };
    let (_, p) = sat.project("exp", options).await;
    p.create_bucket("bkt").await.unwrap();
    let pieces = |sn: &StorageNodes| -> usize { (0..3).map(|i| held(sn, i).len()).sum() };
    let keep = orbit_testkit::random_bytes(100 << 10, 1);
    p.upload("bkt", "keep", &keep[..], &|_| {}).await.unwrap();
    let kept = pieces(&sn);
    let expires = orbit_satellite_model::unix_now() + 3;
    let brief = orbit_testkit::random_bytes(150 << 10, 2);
    p.upload_expiring("bkt", "brief", &brief[..], &|_| {}, expires)
        .await
        .unwrap();
    assert!(pieces(&sn) > kept);
    assert_eq!(p.list("bkt", "").await.unwrap().len(), 2);

    // Expired: gone from listings and downloads at once, before any sweep.
    while orbit_satellite_model::unix_now() <= expires {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed: Vec<String> = p
        .list("bkt", "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, vec!["keep".to_string()]);
    let e = p
        .download("bkt", "brief", &mut Vec::new(), &|_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // The nodes delete its pieces by their own order limits' expiry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pieces(&sn) > kept {
        assert!(
            Instant::now() < deadline,
            "expired pieces left on the nodes"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The loop drops its segments; what stays is whole.
    assert_eq!(pass(&sat.r, 1).await["complete"], true);
    let segments = orbit_kv::Scan::prefix(&*sat.kv, orbit_satellite_model::keys::SEGMENTS, 100)
        .collect()
        .await
        .unwrap();
    assert_eq!(segments.len(), 2, "keep's two segments");
    let mut back = Vec::new();
    p.download("bkt", "keep", &mut back, &|_| {}).await.unwrap();
    assert!(back == keep);
}
