//! Repair through a whole network in one process: the loop's checker queues injured
//! segments, repairers (built as `satellite run repair` builds them) rebuild them on
//! new nodes over real piecestores, and the results are read back through the uplink.

use orbit_identity::NodeId;
use orbit_kv::{Kv, Scan};
use orbit_protocol::Action;
use orbit_repair::{Outcome, RepairSection};
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::Segment;
use orbit_satellite_model::orders::Settled;
use orbit_satellite_model::repair::{health, HealthRules, RepairQueue};
use orbit_satellite_model::unix_now;
use orbit_segment_loop::Active;
use orbit_testplanet::{random_bytes, Planet};
use std::collections::HashSet;
use std::sync::Arc;
use uplink::project::{Options, Project};

const RULES: HealthRules = HealthRules {
    online_window_s: 3600,
    distinct_networks: false,
};

fn options(k: u32, repair: u32, total: u32) -> Options {
    Options {
        k,
        repair,
        success: total,
        total,
        segment_size: 256 << 10,
        inline_max: 4096,
    }
}

/// The segments of `bucket/key`, as the satellite keeps them.
async fn segments(planet: &Planet, bucket: &str, key: &str) -> (keys::StreamId, Vec<Segment>) {
    let enc = uplink::crypt::encrypt_path(&planet.access.root, bucket, key);
    let (obj, segs) = planet
        .api
        .meta
        .get_object("test", bucket, &enc)
        .await
        .unwrap();
    (obj.stream, segs)
}

async fn pass(planet: &Planet) -> orbit_repair::CheckerStats {
    let (lp, _workers) = planet.loop_process("test-loop");
    let active: Active = Arc::new(|| true);
    let report = lp.segment_loop.run_pass(active).await;
    assert!(report.problems().is_none(), "{:?}", report.problems());
    lp.checker.stats().expect("the checker finished")
}

async fn download(p: &Project, bucket: &str, key: &str) -> Vec<u8> {
    let mut back = Vec::new();
    p.download(bucket, key, &mut back, &|_| {}).await.unwrap();
    back
}

fn piece_files(planet: &Planet) -> usize {
    (0..planet.nodes.len())
        .map(|i| orbit_testplanet::files(&planet.node_dir(i).join("storage/pieces")).len())
        .sum()
}

fn section() -> RepairSection {
    RepairSection {
        // One download at a time beyond k = none: which pieces are tried is certain.
        download_margin: 0,
        ..RepairSection::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_rebuilds_missing_pieces_elsewhere_drops_corrupt_ones_and_settles_its_orders() {
    let planet = Planet::start(12).await;
    let p = planet.project(options(3, 5, 7)).await;
    p.create_bucket("bkt").await.unwrap();
    let data = random_bytes(600 << 10, 7);
    p.upload("bkt", "x", &data[..], &|_| {}).await.unwrap();
    p.upload("bkt", "tiny", &b"inline"[..], &|_| {})
        .await
        .unwrap();
    let (stream, before) = segments(&planet, "bkt", "x").await;
    assert_eq!(before.len(), 3);
    // Segment 0: the nodes of its last two pieces leave for good; the nodes of its
    // first two (the first a repair tries) send wrong bytes for everything they hold.
    let seg0 = before[0].pieces.clone();
    let gone: Vec<NodeId> = seg0[5..].iter().map(|p| p.1).collect();
    let liars: Vec<NodeId> = seg0[..2].iter().map(|p| p.1).collect();
    for id in &gone {
        planet
            .api
            .nodes
            .disqualify(id, "test", unix_now())
            .await
            .unwrap();
    }
    for id in &liars {
        for f in orbit_testplanet::files(
            &planet
                .node_dir(planet.node_index(id))
                .join("storage/pieces"),
        ) {
            let mut b = std::fs::read(&f).unwrap();
            // A byte of the piece's data (the file ends with its tree).
            let at = storagenode::pieces::HEADER_BYTES as usize + 10;
            b[at] ^= 0x55;
            std::fs::write(&f, b).unwrap();
        }
    }
    let checked = pass(&planet).await;
    assert!(checked.injured >= 1, "{checked:?}");
    assert_eq!(checked.lost, 0, "{checked:?}");

    // Two repairers at once on one queue: every job is taken by exactly one.
    let (a, _wa) = planet.repair_process("repairer-a", section());
    let (b, _wb) = planet.repair_process("repairer-b", section());
    let (ra, rb) = tokio::join!(a.repairer.run_once(), b.repairer.run_once());
    let outcomes: Vec<Outcome> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    let repaired = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Repaired { .. }))
        .count();
    assert_eq!(
        repaired as u64, checked.injured,
        "each injured segment repaired once: {outcomes:?}"
    );
    let dropped: u64 = [a.repairer.stats(), b.repairer.stats()]
        .iter()
        .map(|s| s.pieces_dropped_bad)
        .sum();
    assert!(
        dropped >= 2,
        "the liars' pieces of segment 0 are dropped: {outcomes:?}"
    );

    let (_, after) = segments(&planet, "bkt", "x").await;
    let nodes = planet
        .api
        .nodes
        .get_many(
            &after
                .iter()
                .flat_map(|s| s.pieces.iter().map(|p| p.1))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    for s in &after {
        let h = health(s, &nodes, unix_now(), &RULES);
        assert!(
            !h.injured(s),
            "segment {} healthy after repair: {h:?}",
            s.index
        );
        let numbers: HashSet<u16> = s.pieces.iter().map(|p| p.0).collect();
        assert_eq!(
            numbers.len(),
            s.pieces.len(),
            "piece numbers unique: {:?}",
            s.pieces
        );
    }
    assert!(
        after[0]
            .pieces
            .iter()
            .all(|p| !liars.contains(&p.1) && !gone.contains(&p.1)),
        "segment 0 keeps no piece of a liar: {:?}",
        after[0].pieces
    );
    assert!(after[0].pieces.len() as u32 >= 6);
    // The queue is empty: repaired entries went at once, and the next pass finds
    // nothing to do.
    let queue = RepairQueue::new(Arc::new(planet.store.embedded(0)));
    assert!(queue.entries().await.unwrap().is_empty());
    assert!(queue.get(&stream, 0).await.unwrap().is_none());
    let again = pass(&planet).await;
    assert_eq!(again.injured, 0, "{again:?}");

    // With the liars stopped too, the object still downloads byte-identical: the
    // rebuilt pieces verify for any uplink.
    assert!(download(&p, "bkt", "x").await == data);
    assert_eq!(download(&p, "bkt", "tiny").await, b"inline");

    // The nodes settle the repair's orders as any others.
    for n in planet.nodes.iter().flatten() {
        n.run_chores_once().await.unwrap();
    }
    let kv = planet.store.embedded(0);
    let settled: Vec<Settled> = Scan::prefix(&kv, keys::SETTLED, 1000)
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|kv| orbit_kv::record::decode(&kv.key, &kv.value).unwrap())
        .collect();
    for action in [Action::GetRepair, Action::PutRepair] {
        assert!(
            settled.iter().any(|s| s.action == action && s.amount > 0),
            "a settled {action:?} order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segment_with_fewer_than_k_retrievable_pieces_is_counted_lost_and_left_alone() {
    let planet = Planet::start(8).await;
    let p = planet.project(options(3, 4, 5)).await;
    p.create_bucket("bkt").await.unwrap();
    p.upload("bkt", "x", &random_bytes(100 << 10, 3)[..], &|_| {})
        .await
        .unwrap();
    let (stream, segs) = segments(&planet, "bkt", "x").await;
    for (_, id) in &segs[0].pieces[..3] {
        planet
            .api
            .nodes
            .disqualify(id, "test", unix_now())
            .await
            .unwrap();
    }
    let checked = pass(&planet).await;
    assert_eq!((checked.injured, checked.lost), (1, 1), "{checked:?}");
    let (_, rev) = planet
        .api
        .meta
        .segment_at(&stream, 0)
        .await
        .unwrap()
        .unwrap();
    let files = piece_files(&planet);

    let (r, _w) = planet.repair_process("repairer", section());
    let outcomes = r.repairer.run_once().await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Lost { retrievable: 2 }]);
    assert_eq!(r.repairer.stats().lost, 1);
    // Nothing written: the segment as it was, no piece uploaded anywhere.
    let (seg, rev_after) = planet
        .api
        .meta
        .segment_at(&stream, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((seg, rev_after), (segs[0].clone(), rev));
    assert_eq!(piece_files(&planet), files);
    // Still queued, with the attempt counted: it is retried after its back-off
    // (pieces may come back), not at once.
    let queue = RepairQueue::new(Arc::new(planet.store.embedded(0)));
    let e = queue.get(&stream, 0).await.unwrap().expect("still queued");
    assert_eq!((e.attempts, e.lost()), (1, true));
    assert!(
        r.repairer.run_once().await.unwrap().is_empty(),
        "backing off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_racing_deletes_and_overwrites_never_resurrects_or_corrupts() {
    let planet = Planet::start(12).await;
    let p = planet.project(options(2, 4, 5)).await;
    p.create_bucket("bkt").await.unwrap();
    let old: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(300 << 10, i + 1)).collect();
    for (i, d) in old.iter().enumerate() {
        p.upload("bkt", &format!("o{i}"), &d[..], &|_| {})
            .await
            .unwrap();
    }
    // A deterministic race first: a piece list read before a delete never lands after it.
    let (stream0, segs0) = segments(&planet, "bkt", "o0").await;
    let (_, rev) = planet
        .api
        .meta
        .segment_at(&stream0, 0)
        .await
        .unwrap()
        .unwrap();
    p.delete("bkt", "o0").await.unwrap();
    assert!(!planet
        .api
        .meta
        .replace_segment(&stream0, &segs0[0], rev, None)
        .await
        .unwrap());
    assert!(planet
        .api
        .meta
        .segment_at(&stream0, 0)
        .await
        .unwrap()
        .is_none());

    // Three nodes go: most segments are injured.
    for n in &planet.nodes[..3] {
        planet
            .api
            .nodes
            .disqualify(&n.as_ref().unwrap().identity.id(), "test", unix_now())
            .await
            .unwrap();
    }
    let checked = pass(&planet).await;
    assert!(checked.injured > 0, "{checked:?}");
    let old_streams: Vec<keys::StreamId> = {
        let mut v = Vec::new();
        for i in 1..8 {
            v.push(segments(&planet, "bkt", &format!("o{i}")).await.0);
        }
        v
    };
    let new: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(200 << 10, 100 + i)).collect();
    let (r, _w) = planet.repair_process("repairer", RepairSection::default());
    let race = async {
        for (i, bytes) in new.iter().enumerate().skip(1) {
            let key = format!("o{i}");
            if i % 2 == 1 {
                p.delete("bkt", &key).await.unwrap();
            } else {
                p.upload("bkt", &key, &bytes[..], &|_| {}).await.unwrap();
            }
        }
    };
    let (outcomes, ()) = tokio::join!(r.repairer.run_once(), race);
    let outcomes = outcomes.unwrap();
    assert!(
        !outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))),
        "{outcomes:?}"
    );
    // Deleted objects stay deleted, their old segments gone; overwritten ones hold
    // the new bytes.
    let kv = planet.store.embedded(0);
    for (i, stream) in (1..8).zip(&old_streams) {
        let key = format!("o{i}");
        let left = kv
            .range(orbit_kv::RangeRequest {
                count_only: true,
                ..orbit_kv::RangeRequest::prefix(keys::segments_of(stream))
            })
            .await
            .unwrap()
            .count;
        assert_eq!(left, 0, "{key}: the old stream's segments stay gone");
        if i % 2 == 1 {
            let err = p.download("bkt", &key, &mut Vec::new(), &|_| {}).await;
            assert!(err.is_err(), "{key} was deleted");
        } else {
            assert!(
                download(&p, "bkt", &key).await == new[i],
                "{key} holds the new bytes"
            );
        }
    }
}
