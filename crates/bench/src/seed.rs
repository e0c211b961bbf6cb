//! Segments and nodes seeded straight into a store, for the loop and gc benchmarks:
//! 10 pieces per segment over the nodes, every node online.

use futures::stream::{self, StreamExt};
use orbit_identity::Identity;
use orbit_kv::{Kv, PutRequest, TxnOp, TxnRequest};
use orbit_protocol::PieceId;
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::{Redundancy, Segment};
use orbit_satellite_model::nodes::NodeRecord;
use orbit_satellite_model::unix_now;
use std::time::Instant;

/// Writes per seeding transaction (etcd's default `--max-txn-ops`).
pub const TXN_OPS: usize = 128;

/// `n` online nodes, one /24 each (no piece is clumped), and their records.
pub fn records(n: usize) -> (Vec<NodeRecord>, Vec<(String, Vec<u8>)>) {
    let now = unix_now();
    let nodes: Vec<NodeRecord> = (0..n)
        .map(|i| {
            let key = Identity::generate().public();
            NodeRecord {
                id: key.id(),
                key,
                // One /24 each: no piece is clumped, no segment queued.
                address: format!("https://10.{}.{}.1:7777", i / 250, i % 250),
                free: 1 << 40,
                version: "bench".into(),
                // Online for the whole run.
                last_seen: now + 24 * 3600,
                disqualified: false,
                last_contact: 0,
                last_contact_failure: 0,
                contact_failures: 0,
                reputation: Default::default(),
            }
        })
        .collect();
    let nodes_kv = nodes
        .iter()
        .map(|n| (keys::node(&n.id), orbit_kv::record::encode(n)))
        .collect();
    (nodes, nodes_kv)
}

/// Segment `i`: 10 pieces (k 4, repair 6, success 8, total 10) on distinct nodes.
pub fn segment(i: u64, nodes: &[NodeRecord]) -> (String, Vec<u8>) {
    let mut stream = [0u8; 16];
    // Spread over the key space as random stream ids are.
    stream[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    stream[8..].copy_from_slice(&i.to_be_bytes());
    let seg = Segment {
        index: 0,
        encrypted_size: 64 << 20,
        inline: None,
        redundancy: Redundancy {
            k: 4,
            repair: 6,
            success: 8,
            total: 10,
        },
        // Distinct per segment, as random roots are: distinct piece ids.
        root: PieceId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        piece_size: 16 << 20,
        created: 0,
        expires: 0,
        pieces: (0..10u16)
            .map(|p| (p, nodes[(i as usize + p as usize * 7) % nodes.len()].id))
            .collect(),
    };
    (keys::segment(&stream, 0), orbit_kv::record::encode(&seg))
}

/// Seeds `nodes` nodes and `segments` segments into `kv`; returns the seconds taken.
pub async fn seed(kv: &dyn Kv, nodes: usize, segments: u64) -> anyhow::Result<f64> {
    let (nodes, node_kvs) = records(nodes);
    let t = Instant::now();
    for chunk in node_kvs.chunks(TXN_OPS) {
        put_all(kv, chunk.to_vec()).await?;
    }
    let batches: Vec<(u64, u64)> = (0..segments)
        .step_by(TXN_OPS)
        .map(|s| (s, (s + TXN_OPS as u64).min(segments)))
        .collect();
    let nodes = &nodes;
    let results: Vec<anyhow::Result<()>> = stream::iter(batches)
        .map(|(a, b)| async move { put_all(kv, (a..b).map(|i| segment(i, nodes)).collect()).await })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(t.elapsed().as_secs_f64())
}

async fn put_all(kv: &dyn Kv, kvs: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let txn = TxnRequest {
        compare: Vec::new(),
        success: kvs
            .into_iter()
            .map(|(k, v)| TxnOp::Put(PutRequest::new(k, v)))
            .collect(),
        failure: Vec::new(),
    };
    kv.txn(txn).await?;
    Ok(())
}
