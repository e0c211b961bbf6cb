//! Garbage collection through a whole network in one process: deleted and
//! overwritten objects' pieces leave every node after two loop passes (the first
//! counts, the second builds filters), the gc sender and the nodes' retain; no live
//! piece is ever removed — pieces uploaded while the pass ran and a false-positive
//! rate set high included — and the satellite's order restores the trash.

use orbit_gc::GcSection;
use orbit_identity::NodeId;
use orbit_protocol::PieceId;
use orbit_segment_loop::Active;
use orbit_testplanet::{random_bytes, Planet};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uplink::project::{Options, Project};

fn options() -> Options {
    Options {
        k: 2,
        repair: 3,
        success: 4,
        total: 4,
        segment_size: 64 << 10,
        inline_max: 1024,
    }
}

/// Every piece every node holds (not its trash), as (node, piece).
fn held(planet: &Planet) -> HashSet<(NodeId, PieceId)> {
    let mut out = HashSet::new();
    for n in planet.nodes.iter().flatten() {
        for (id, _) in n.pieces.pieces().unwrap() {
            out.insert((n.identity.id(), id));
        }
    }
    out
}

/// The pieces the satellite's segments say exist now.
async fn live(planet: &Planet, keys: &[&str]) -> HashSet<(NodeId, PieceId)> {
    let mut out = HashSet::new();
    for k in keys {
        let enc = uplink::crypt::encrypt_path(&planet.access.root, "bkt", k);
        let (_, segs) = planet
            .api
            .meta
            .get_object("test", "bkt", &enc)
            .await
            .unwrap();
        for s in segs {
            for &(num, node) in &s.pieces {
                out.insert((node, s.root.derive(&node, num)));
            }
        }
    }
    out
}

async fn gc_round(planet: &Planet, during: Option<(&Project, &str, &[u8])>) {
    let (lp, _w) = planet.loop_process("test-loop");
    let active: Active = Arc::new(|| true);
    let report = match during {
        // An upload racing the pass: whether its pieces land before or after the
        // pass's revision, they must survive.
        Some((p, key, data)) => {
            let (report, up) = tokio::join!(
                lp.segment_loop.run_pass(active),
                p.upload("bkt", key, data, &|_| {})
            );
            up.unwrap();
            report
        }
        None => lp.segment_loop.run_pass(active).await,
    };
    assert!(report.problems().is_none(), "{:?}", report.problems());
    let (g, _gw) = planet.gc_process("test-gc");
    g.sender.run_once().await.unwrap();
    for n in planet.nodes.iter().flatten() {
        n.run_retain_once().await.unwrap();
    }
}

async fn download(p: &Project, key: &str) -> Vec<u8> {
    let mut back = Vec::new();
    p.download("bkt", key, &mut back, &|_| {}).await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_leaves_the_nodes_and_no_live_piece_ever_does() {
    let mut planet = Planet::start(6).await;
    // Half the garbage survives each filter by chance: still no live piece may go.
    planet.set_gc(GcSection {
        false_positive: 0.5,
        ..GcSection::default()
    });
    let p = planet.project(options()).await;
    p.create_bucket("bkt").await.unwrap();
    let keep = random_bytes(200 << 10, 1);
    let old = random_bytes(150 << 10, 2);
    let new = random_bytes(100 << 10, 3);
    p.upload("bkt", "keep", &keep[..], &|_| {}).await.unwrap();
    p.upload("bkt", "gone", &random_bytes(180 << 10, 4)[..], &|_| {})
        .await
        .unwrap();
    p.upload("bkt", "over", &old[..], &|_| {}).await.unwrap();
    let before = held(&planet);
    // The first pass only counts pieces; garbage made after it is collected by the
    // next.
    gc_round(&planet, None).await;
    assert_eq!(held(&planet), before, "a counting pass trashes nothing");
    p.delete("bkt", "gone").await.unwrap();
    p.upload("bkt", "over", &new[..], &|_| {}).await.unwrap();
    // Garbage must be more than the nodes' skew (2 s) older than the newest segment
    // a filter is dated by; times are whole seconds, so wait out a margin too.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let racing = random_bytes(120 << 10, 5);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let during = (rounds == 1).then_some((&p, "racing", &racing[..]));
        gc_round(&planet, during).await;
        let now = held(&planet);
        let want = live(&planet, &["keep", "over", "racing"]).await;
        // Never a live piece gone.
        let missing: Vec<_> = want.difference(&now).collect();
        assert!(missing.is_empty(), "live pieces trashed: {missing:?}");
        if now == want {
            break;
        }
        // At a 50% false-positive rate a fresh seed each pass catches the rest.
        assert!(
            rounds < 12,
            "garbage left after {rounds} rounds: {:?}",
            now.difference(&want).count()
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(download(&p, "keep").await == keep);
    assert!(download(&p, "over").await == new);
    assert!(download(&p, "racing").await == racing);

    // The operator restores a node's trash: what garbage collection took is back.
    let node = planet
        .nodes
        .iter()
        .flatten()
        .find(|n| n.pieces.trashed() > 0)
        .unwrap();
    let order = orbit_protocol::RestoreTrash::sign(
        &planet.satellite,
        node.identity.id(),
        orbit_satellite_model::unix_now(),
    );
    let back = orbit_protocol::client::restore_trash(&node.url, &node.identity.id(), &order)
        .await
        .unwrap();
    assert!(back > 0);
    assert_eq!(node.pieces.trashed(), 0);
}
