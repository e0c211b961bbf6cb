//! The garbage-collection observer in real loop passes over a real store member:
//! counts first, then filters that hold every live piece of their node, dated by the
//! newest segment, a fresh seed each pass, nothing published after an incomplete
//! pass, and no filter for a node that outgrew its count.

use orbit_gc::{GcObserver, GcSection};
use orbit_identity::{Identity, NodeId};
use orbit_kv::{record, Kv, PutRequest};
use orbit_protocol::bloom::Filter;
use orbit_protocol::PieceId;
use orbit_satellite_model::gc::GcState;
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::{Redundancy, Segment};
use orbit_satellite_model::nodes::NodeRecord;
use orbit_segment_loop::{Active, LoopSection, SegmentLoop};
use orbit_testkit::{OrbitCluster, Timings};
use std::collections::HashMap;
use std::sync::Arc;

async fn node(kv: &dyn Kv, disqualified: bool) -> NodeId {
    let key = Identity::generate().public();
    let mut rec = NodeRecord::new(key.id(), key);
    rec.address = "https://127.0.0.1:1".into();
    rec.disqualified = disqualified;
    kv.put(PutRequest::new(keys::node(&rec.id), record::encode(&rec)))
        .await
        .unwrap();
    rec.id
}

/// Segment `i` with a piece on each of `nodes`, committed at `created`.
async fn segment(kv: &dyn Kv, i: u32, nodes: &[NodeId], created: u64) -> Segment {
    let mut stream = [0u8; 16];
    stream[..4].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
    stream[4..8].copy_from_slice(&i.to_be_bytes());
    let seg = Segment {
        index: 0,
        encrypted_size: 1000,
        inline: None,
        redundancy: Redundancy {
            k: 1,
            repair: 1,
            success: 1,
            total: nodes.len() as u32,
        },
        root: PieceId::random(),
        piece_size: 500,
        created,
        expires: 0,
        pieces: nodes
            .iter()
            .enumerate()
            .map(|(n, id)| (n as u16, *id))
            .collect(),
    };
    kv.put(PutRequest::new(
        keys::segment(&stream, 0),
        record::encode(&seg),
    ))
    .await
    .unwrap();
    seg
}

async fn pass(kv: &Arc<dyn Kv>, gc: &Arc<GcObserver>) -> orbit_segment_loop::PassReport {
    let mut l = SegmentLoop::new(
        kv.clone(),
        LoopSection {
            ranges: 2,
            batch: 50,
            ..LoopSection::default()
        },
    );
    l.add(gc.clone());
    let active: Active = Arc::new(|| true);
    l.run_pass(active).await
}

async fn filters(
    kv: &Arc<dyn Kv>,
) -> HashMap<NodeId, (orbit_satellite_model::gc::FilterHead, Filter)> {
    let state = GcState::new(kv.clone());
    let mut out = HashMap::new();
    for h in state.heads().await.unwrap() {
        let f = Filter::decode(&state.filter(&h).await.unwrap()).unwrap();
        out.insert(h.node, (h, f));
    }
    out
}

#[tokio::test]
async fn filters_hold_every_live_piece_and_only_complete_passes_publish() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(node(&*kv, false).await);
    }
    let dq = node(&*kv, true).await;
    let idle = node(&*kv, false).await;
    let mut segs = Vec::new();
    for i in 0..300 {
        let on: Vec<NodeId> = (0..3).map(|j| nodes[(i as usize + j) % 4]).collect();
        let mut on = on;
        if i % 10 == 0 {
            on.push(dq);
        }
        segs.push(segment(&*kv, i, &on, 1_000 + u64::from(i)).await);
    }
    let gc = Arc::new(GcObserver::new(kv.clone(), GcSection::default()));

    // First pass: no counts yet, so only counting.
    let r = pass(&kv, &gc).await;
    assert!(r.complete, "{r:?}");
    let s = gc.stats().unwrap();
    assert_eq!((s.filters, s.counted_only), (0, 5), "{s:?}");
    assert!(filters(&kv).await.is_empty());
    let counts = GcState::new(kv.clone()).counts().await.unwrap();
    assert_eq!(counts.get(&idle), Some(&0));
    assert!(
        !counts.contains_key(&dq),
        "a disqualified node needs no count"
    );
    assert_eq!(counts.values().sum::<u64>(), 900);

    // Second pass: a filter per qualified node, each holding all of its pieces.
    let r = pass(&kv, &gc).await;
    assert!(r.complete, "{r:?}");
    let s = gc.stats().unwrap();
    assert_eq!(s.filters, 5, "{s:?}");
    let got = filters(&kv).await;
    assert!(!got.contains_key(&dq));
    for seg in &segs {
        for &(num, n) in &seg.pieces {
            if n == dq {
                continue;
            }
            let (head, f) = &got[&n];
            assert!(
                f.contains(&seg.root.derive(&n, num)),
                "a live piece left out"
            );
            assert_eq!(head.created, 1_299, "dated by the newest segment");
        }
    }
    // Pieces of nothing are mostly left out (about the target rate).
    let (_, f) = &got[&nodes[0]];
    let kept = (0..2000).filter(|_| f.contains(&PieceId::random())).count();
    assert!(kept < 400, "{kept} of 2000 unknown pieces kept");
    // The idle node's filter is empty: everything older it holds is garbage.
    assert_eq!(got[&idle].0.pieces, 0);
    let first_seed = got[&nodes[0]].1.encode();

    // A node that outgrew its count gets no filter this pass; the others a fresh one.
    for i in 300..1300 {
        segment(&*kv, i, &[nodes[1]], 5_000).await;
    }
    let r = pass(&kv, &gc).await;
    assert!(r.complete);
    let s = gc.stats().unwrap();
    assert_eq!((s.filters, s.counted_only), (4, 1), "{s:?}");
    let got = filters(&kv).await;
    assert!(
        got[&nodes[1]].0.pass < r.revision,
        "the outgrown node keeps its older filter"
    );
    assert_eq!(got[&nodes[0]].0.pass, r.revision);
    assert_ne!(
        got[&nodes[0]].1.encode(),
        first_seed,
        "a fresh seed every pass"
    );
    // Next pass it fits again.
    let r = pass(&kv, &gc).await;
    assert!(r.complete);
    assert_eq!(gc.stats().unwrap().filters, 5);
    assert_eq!(filters(&kv).await[&nodes[1]].0.pieces, 225 + 1000);

    // An unreadable segment makes the pass incomplete: nothing is published.
    let before: HashMap<NodeId, i64> = filters(&kv)
        .await
        .into_iter()
        .map(|(n, (h, _))| (n, h.pass))
        .collect();
    kv.put(PutRequest::new(
        keys::segment(&[0xee; 16], 0),
        "not a record",
    ))
    .await
    .unwrap();
    let r = pass(&kv, &gc).await;
    assert!(!r.complete);
    assert!(!gc.stats().unwrap().published);
    let after: HashMap<NodeId, i64> = filters(&kv)
        .await
        .into_iter()
        .map(|(n, (h, _))| (n, h.pass))
        .collect();
    assert_eq!(before, after);
}
