//! Tallies through a whole network in one process: a complete loop pass writes, per
//! node, the piece bytes it holds and, per bucket, bytes, segments and objects; the
//! totals equal the sums over the segments, and the next tally counts byte-hours over
//! the interval since.

use orbit_identity::NodeId;
use orbit_satellite_model::tally::Tallies;
use orbit_segment_loop::Active;
use orbit_testplanet::{random_bytes, Planet};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uplink::project::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tallies_equal_the_sums_over_the_segments() {
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
    let files: [(&str, &str, usize); 4] = [
        ("photos", "a", 150 << 10),
        ("photos", "b", 20 << 10),
        ("docs", "c", 300),
        ("docs", "d", 70 << 10),
    ];
    for (b, k, n) in files {
        let _ = p.create_bucket(b).await;
        p.upload(b, k, &random_bytes(n, n as u64)[..], &|_| {})
            .await
            .unwrap();
    }
    p.create_bucket("empty").await.unwrap();
    // What the tallies must come to, from the segments themselves.
    let mut want_nodes: HashMap<NodeId, (u64, u64)> = HashMap::new();
    let mut want_buckets: HashMap<String, (u64, u64, u64)> = HashMap::new();
    for (b, k, _) in files {
        let enc = uplink::crypt::encrypt_path(&planet.access.root, b, k);
        let (_, segs) = planet.api.meta.get_object("test", b, &enc).await.unwrap();
        let w = want_buckets.entry(b.to_string()).or_default();
        w.2 += 1;
        for s in segs {
            w.0 += s.encrypted_size;
            w.1 += 1;
            for (_, n) in &s.pieces {
                let e = want_nodes.entry(*n).or_default();
                e.0 += s.piece_size;
                e.1 += 1;
            }
        }
    }
    let pass = || async {
        let (lp, _w) = planet.loop_process("test-loop");
        let active: Active = Arc::new(|| true);
        let r = lp.segment_loop.run_pass(active).await;
        assert!(r.problems().is_none(), "{:?}", r.problems());
        lp.tally.stats().unwrap()
    };
    let first = pass().await;
    assert!(first.written && first.interval_s == 0, "{first:?}");
    let tallies = Tallies::new(Arc::new(planet.store.embedded(0)));
    let nodes = tallies.nodes().await.unwrap();
    let got: HashMap<NodeId, (u64, u64)> = nodes
        .iter()
        .map(|n| (n.node, (n.bytes, n.pieces)))
        .collect();
    assert_eq!(got, want_nodes);
    assert!(nodes.iter().all(|n| n.byte_hours == 0.0));
    let buckets = tallies.buckets().await.unwrap();
    let got: HashMap<String, (u64, u64, u64)> = buckets
        .iter()
        .filter(|b| b.objects > 0)
        .map(|b| (b.bucket.clone(), (b.bytes, b.segments, b.objects)))
        .collect();
    assert_eq!(got, want_buckets);
    let docs = buckets.iter().find(|b| b.bucket == "docs").unwrap();
    assert!(
        docs.inline_bytes > 0,
        "the 300-byte object is inline: {docs:?}"
    );
    assert_eq!(
        first.node_bytes,
        want_nodes.values().map(|v| v.0).sum::<u64>()
    );

    // The next tally: byte-hours over the interval since the first.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = pass().await;
    assert!(second.interval_s >= 2, "{second:?}");
    let later: Vec<_> = tallies
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.interval_s > 0)
        .collect();
    assert_eq!(later.len(), want_nodes.len());
    for n in later {
        let want = n.bytes as f64 * n.interval_s as f64 / 3600.0;
        assert!((n.byte_hours - want).abs() < 1e-6, "{n:?}");
    }
}
