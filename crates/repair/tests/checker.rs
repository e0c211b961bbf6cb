//! The repair checker in a real loop pass over a real store member: injured segments
//! (missing pieces on offline, disqualified or unknown nodes; clumped pieces) are
//! queued least healthy first, lost ones counted, inline and healthy ones left alone,
//! and entries a complete pass no longer flags are removed — never after an
//! incomplete pass.

use orbit_identity::{Identity, NodeId};
use orbit_kv::{record, DeleteRequest, Kv, PutRequest};
use orbit_protocol::PieceId;
use orbit_repair::Checker;
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::{Redundancy, Segment};
use orbit_satellite_model::nodes::NodeRecord;
use orbit_satellite_model::repair::{HealthRules, RepairQueue};
use orbit_satellite_model::unix_now;
use orbit_segment_loop::{LoopSection, SegmentLoop};
use orbit_testkit::{OrbitCluster, Timings};
use std::sync::Arc;

async fn node(kv: &dyn Kv, ip: &str, age_s: u64, disqualified: bool) -> NodeId {
    let key = Identity::generate().public();
    let rec = NodeRecord {
        id: key.id(),
        key,
        address: format!("https://{ip}:7777"),
        free: 1 << 30,
        version: "test".into(),
        last_seen: unix_now() - age_s,
        disqualified,
        last_contact: 0,
        last_contact_failure: 0,
        contact_failures: 0,
        reputation: Default::default(),
    };
    kv.put(PutRequest::new(keys::node(&rec.id), record::encode(&rec)))
        .await
        .unwrap();
    rec.id
}

async fn segment(kv: &dyn Kv, n: u8, nodes: &[NodeId], inline: bool) -> keys::StreamId {
    let stream = [n.wrapping_mul(37); 16];
    let seg = Segment {
        index: 0,
        encrypted_size: 1000,
        inline: inline.then(|| vec![1; 10]),
        // k 2, repair at 3 or fewer healthy, success 4.
        redundancy: Redundancy {
            k: 2,
            repair: 3,
            success: 4,
            total: 5,
        },
        root: PieceId([n; 32]),
        piece_size: 500,
        created: 0,
        expires: 0,
        pieces: nodes
            .iter()
            .enumerate()
            .map(|(i, id)| (i as u16, *id))
            .collect(),
    };
    kv.put(PutRequest::new(
        keys::segment(&stream, 0),
        record::encode(&seg),
    ))
    .await
    .unwrap();
    stream
}

#[tokio::test]
async fn injured_segments_are_queued_least_healthy_first_and_dropped_once_healthy() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let mut up = Vec::new();
    for i in 0..5 {
        up.push(node(&*kv, &format!("10.0.{i}.1"), 0, false).await);
    }
    let offline = node(&*kv, "10.1.0.1", 7200, false).await;
    let offline2 = node(&*kv, "10.1.1.1", 7200, false).await;
    let dq = node(&*kv, "10.1.2.1", 0, true).await;
    let unknown = NodeId([9; 32]);
    let same_net = node(&*kv, "10.0.0.2", 0, false).await;

    let healthy = segment(&*kv, 1, &up[..4], false).await;
    // 3 healthy: at the repair threshold.
    let one_gone = segment(&*kv, 2, &[up[0], up[1], up[2], offline], false).await;
    // 1 healthy, 1 clumped: lost (2 retrievable would do; 1 healthy + 1 clumped = 2).
    let two_left = segment(&*kv, 3, &[up[0], same_net, dq, unknown], false).await;
    // Clumped only: 4 healthy, one more in a /24 already used.
    let clumped = segment(&*kv, 4, &[up[0], up[1], up[2], up[3], same_net], false).await;
    let lost = segment(&*kv, 5, &[up[4], offline, offline2, dq], false).await;
    segment(&*kv, 6, &[offline, offline2], true).await;

    let rules = HealthRules {
        online_window_s: 3600,
        distinct_networks: true,
    };
    let checker = Arc::new(Checker::new(kv.clone(), rules));
    let mut l = SegmentLoop::new(
        kv.clone(),
        LoopSection {
            ranges: 2,
            batch: 2,
            ..LoopSection::default()
        },
    );
    l.add(checker.clone());
    let report = l.run_pass(Arc::new(|| true)).await;
    assert!(report.problems().is_none(), "{report:?}");
    let stats = checker.stats().unwrap();
    assert_eq!(stats.checked, 5, "the inline segment is skipped");
    assert_eq!(stats.injured, 4);
    assert_eq!(stats.lost, 1);

    let queue = RepairQueue::new(kv.clone());
    let entries = queue.entries().await.unwrap();
    let order: Vec<_> = entries
        .iter()
        .map(|e| (e.stream, e.healthy, e.retrievable))
        .collect();
    assert_eq!(
        order,
        vec![
            (two_left, 1, 2),
            (lost, 1, 1),
            (one_gone, 3, 3),
            (clumped, 4, 5)
        ],
        "least healthy first"
    );
    assert!(!entries[0].lost() && entries[1].lost());
    assert!(queue.get(&healthy, 0).await.unwrap().is_none());
    let first = entries[2].clone();

    // A node comes back: its segment is flagged no more and leaves the queue; the
    // others keep their insertion time.
    node_back(&*kv, offline).await;
    let report = l.run_pass(Arc::new(|| true)).await;
    assert!(report.problems().is_none(), "{report:?}");
    assert!(
        queue.get(&one_gone, 0).await.unwrap().is_none(),
        "healthy again: {report:?} {:?}",
        checker.stats()
    );
    let e = queue.get(&lost, 0).await.unwrap().unwrap();
    assert_eq!(
        e.healthy, 2,
        "one more healthy piece since the node came back"
    );
    assert_eq!(checker.stats().unwrap().removed, 1);
    assert!(first.inserted <= e.updated);

    // An incomplete pass removes nothing, even for a segment that is gone.
    kv.delete(DeleteRequest::key(keys::segment(&clumped, 0)))
        .await
        .unwrap();
    kv.put(PutRequest::new(keys::segment(&[0xee; 16], 0), "corrupt"))
        .await
        .unwrap();
    let report = l.run_pass(Arc::new(|| true)).await;
    assert!(!report.complete);
    assert!(
        queue.get(&clumped, 0).await.unwrap().is_some(),
        "removed after an incomplete pass"
    );
    kv.delete(DeleteRequest::key(keys::segment(&[0xee; 16], 0)))
        .await
        .unwrap();
    let report = l.run_pass(Arc::new(|| true)).await;
    assert!(report.problems().is_none(), "{report:?}");
    assert!(
        queue.get(&clumped, 0).await.unwrap().is_none(),
        "a gone segment leaves the queue"
    );
}

/// Marks `id` as heard from now.
async fn node_back(kv: &dyn Kv, id: NodeId) {
    let cur = kv.get(keys::node(&id).as_bytes()).await.unwrap().unwrap();
    let mut rec: NodeRecord = record::decode(&cur.key, &cur.value).unwrap();
    rec.last_seen = unix_now();
    kv.put(PutRequest::new(keys::node(&id), record::encode(&rec)))
        .await
        .unwrap();
}
