//! Expiring objects through a whole network in one process: an object uploaded with
//! an expiry is there until then, and from then on gone from listings and downloads
//! at once; the loop drops its segments, the API's sweep its record, and the nodes
//! delete its pieces by their own order limits. An object without one stays.

use orbit_segment_loop::Active;
use orbit_testplanet::{random_bytes, Planet};
use std::sync::Arc;
use std::time::Duration;
use uplink::project::Options;

fn pieces_held(planet: &Planet) -> usize {
    planet
        .nodes
        .iter()
        .flatten()
        .map(|n| n.pieces.pieces().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_objects_vanish_at_once_and_their_pieces_leave_the_nodes() {
    let planet = Planet::start(5).await;
    let p = planet
        .project(Options {
            k: 2,
            repair: 3,
            success: 4,
            total: 4,
            segment_size: 64 << 10,
            inline_max: 1024,
        })
        .await;
    p.create_bucket("bkt").await.unwrap();
    let keep = random_bytes(100 << 10, 1);
    p.upload("bkt", "keep", &keep[..], &|_| {}).await.unwrap();
    let kept_pieces = pieces_held(&planet);
    let now = orbit_satellite_model::unix_now();
    let brief = random_bytes(150 << 10, 2);
    p.upload_expiring("bkt", "brief", &brief[..], &|_| {}, now + 3)
        .await
        .unwrap();
    p.upload_expiring("bkt", "tiny", &b"inline"[..], &|_| {}, now + 3)
        .await
        .unwrap();
    // An expiry in the past is refused with a clear error.
    let e = p
        .upload_expiring("bkt", "late", &b"x"[..], &|_| {}, now - 10)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expire"), "{e}");
    // Until it expires the object is there.
    let mut back = Vec::new();
    p.download("bkt", "brief", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == brief);
    // Listings come in encrypted-key order: compare them sorted.
    let names = |l: Vec<uplink::project::Listed>| {
        let mut k: Vec<String> = l.into_iter().map(|o| o.key).collect();
        k.sort();
        k
    };
    assert_eq!(
        names(p.list("bkt", "").await.unwrap()),
        ["brief", "keep", "tiny"]
    );
    assert!(pieces_held(&planet) > kept_pieces);

    tokio::time::sleep(Duration::from_secs(4)).await;
    // At once: gone from listings and downloads, before any sweep.
    assert_eq!(names(p.list("bkt", "").await.unwrap()), ["keep"]);
    let mut back = Vec::new();
    assert!(p
        .download("bkt", "brief", &mut back, &|_| {})
        .await
        .is_err());
    assert!(p.download("bkt", "tiny", &mut back, &|_| {}).await.is_err());

    // The loop drops the segments; the sweep the records; the nodes the pieces.
    let (lp, _w) = planet.loop_process("test-loop");
    let active: Active = Arc::new(|| true);
    let report = lp.segment_loop.run_pass(active).await;
    assert!(report.problems().is_none(), "{:?}", report.problems());
    // Three segments of "brief" and the inline one of "tiny".
    assert_eq!(lp.expiry.stats().unwrap().dropped, 4);
    let swept = planet
        .api
        .meta
        .remove_expired(orbit_satellite_model::unix_now())
        .await
        .unwrap();
    assert_eq!(swept, 2);
    for n in planet.nodes.iter().flatten() {
        n.run_retain_once().await.unwrap();
    }
    assert_eq!(
        pieces_held(&planet),
        kept_pieces,
        "expired pieces left on the nodes"
    );
    let mut back = Vec::new();
    p.download("bkt", "keep", &mut back, &|_| {}).await.unwrap();
    assert!(back == keep);
}
