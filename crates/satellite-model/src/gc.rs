//! Garbage collection's state in the store (keys in [`crate::keys`]): each node's
//! piece count as the last complete pass found it (what the next pass sizes the node's
//! filter from), each node's newest filter (a head record and the bytes in chunks, so
//! no value exceeds a store request), and the newest filter sent to each node.

use crate::keys;
use crate::{decode, Error};
use orbit_identity::NodeId;
use orbit_kv::record::encode;
use orbit_kv::{DeleteRequest, Kv, PutRequest, Scan, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes per stored chunk of a filter (below etcd's default 1.5 MiB request limit).
pub const CHUNK: usize = 1 << 20;

/// A node's piece count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceCount {
    /// Pieces the pass found on the node.
    pub pieces: u64,
    /// The pass's revision.
    pub pass: i64,
}

crate::versioned_v1!(PieceCount, "piece count");

/// A node's newest filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterHead {
    /// The node.
    pub node: NodeId,
    /// Revision of the pass that built it.
    pub pass: i64,
    /// Unix time (s) of the newest segment the pass saw: pieces stored before it
    /// (less the node's skew) and absent from the filter are garbage.
    pub created: u64,
    /// Pieces added.
    pub pieces: u64,
    /// Chunks the bytes are kept in.
    pub chunks: u32,
    /// Bytes of the encoded filter.
    pub bytes: u64,
    /// BLAKE3 of the encoded filter, hex.
    pub hash: String,
}

crate::versioned_v1!(FilterHead, "filter head");

/// The newest filter a node acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The filter's pass.
    pub pass: i64,
    /// Unix time (s) the node acknowledged it.
    pub at: u64,
}

crate::versioned_v1!(Sent, "filter sent record");

/// Garbage collection's state.
#[derive(Clone)]
pub struct GcState {
    kv: Arc<dyn Kv>,
}

impl GcState {
    /// The state in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> GcState {
        GcState { kv }
    }

    /// Every node's piece count.
    pub async fn counts(&self) -> Result<HashMap<NodeId, u64>, Error> {
        let mut out = HashMap::new();
        for kv in Scan::prefix(&*self.kv, keys::GC_COUNTS, 1000)
            .collect()
            .await?
        {
            let c: PieceCount = decode(&kv.key, &kv.value)?;
            let id = std::str::from_utf8(&kv.key)
                .ok()
                .and_then(|k| k.strip_prefix(keys::GC_COUNTS))
                .and_then(|h| h.parse::<NodeId>().ok())
                .ok_or_else(|| Error::Internal("a malformed piece count key".into()))?;
            out.insert(id, c.pieces);
        }
        Ok(out)
    }

    /// Records the piece counts a complete pass found.
    pub async fn set_counts(&self, counts: &HashMap<NodeId, u64>, pass: i64) -> Result<(), Error> {
        let ops: Vec<TxnOp> = counts
            .iter()
            .map(|(node, &pieces)| {
                TxnOp::Put(PutRequest::new(
                    keys::gc_count(node),
                    encode(&PieceCount { pieces, pass }),
                ))
            })
            .collect();
        crate::write_batches(&*self.kv, ops).await
    }

    /// Publishes a node's filter: its chunks first, then the head that makes it the
    /// newest, then the older filters go. A head from a later pass is never replaced.
    pub async fn publish(
        &self,
        node: &NodeId,
        pass: i64,
        created: u64,
        pieces: u64,
        filter: &[u8],
    ) -> Result<FilterHead, Error> {
        let prefix = keys::gc_filter_prefix(node, pass);
        let chunks: Vec<&[u8]> = filter.chunks(CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            self.kv
                .put(PutRequest::new(format!("{prefix}{i:06}"), c.to_vec()))
                .await?;
        }
        let head = FilterHead {
            node: *node,
            pass,
            created,
            pieces,
            chunks: chunks.len() as u32,
            bytes: filter.len() as u64,
            hash: orbit_identity::hex_encode(blake3::hash(filter).as_bytes()),
        };
        let key = keys::gc_latest(node);
        if let Some(old) = self.latest(node).await? {
            if old.pass > pass {
                return Ok(old);
            }
        }
        self.kv.put(PutRequest::new(key, encode(&head))).await?;
        // Older filters: everything of the node's before this pass.
        let all = keys::gc_filters_of(node);
        self.kv
            .delete(DeleteRequest {
                key: all.into_bytes(),
                range_end: prefix.into_bytes(),
                ..DeleteRequest::default()
            })
            .await?;
        Ok(head)
    }

    /// A node's newest filter head.
    pub async fn latest(&self, node: &NodeId) -> Result<Option<FilterHead>, Error> {
        crate::read_one(&*self.kv, keys::gc_latest(node)).await
    }

    /// Every node's newest filter head.
    pub async fn heads(&self) -> Result<Vec<FilterHead>, Error> {
        crate::read_prefix(&*self.kv, keys::GC_LATEST).await
    }

    /// The bytes of the filter `head` names, checked against its hash.
    pub async fn filter(&self, head: &FilterHead) -> Result<Vec<u8>, Error> {
        let prefix = keys::gc_filter_prefix(&head.node, head.pass);
        let mut out = Vec::with_capacity(head.bytes as usize);
        let kvs = Scan::prefix(&*self.kv, &prefix, 16).collect().await?;
        if kvs.len() != head.chunks as usize {
            return Err(Error::Internal(format!(
                "filter of node {} for pass {}: {} of {} chunks",
                head.node,
                head.pass,
                kvs.len(),
                head.chunks
            )));
        }
        for kv in kvs {
            out.extend_from_slice(&kv.value);
        }
        let hash = orbit_identity::hex_encode(blake3::hash(&out).as_bytes());
        if hash != head.hash || out.len() as u64 != head.bytes {
            return Err(Error::Internal(format!(
                "filter of node {} for pass {} does not match its head",
                head.node, head.pass
            )));
        }
        Ok(out)
    }

    /// Records that a node acknowledged the filter of pass `pass` at `now`.
    pub async fn mark_sent(&self, node: &NodeId, pass: i64, now: u64) -> Result<(), Error> {
        self.kv
            .put(PutRequest::new(
                keys::gc_sent(node),
                encode(&Sent { pass, at: now }),
            ))
            .await?;
        Ok(())
    }

    /// The newest filter a node acknowledged.
    pub async fn sent(&self, node: &NodeId) -> Result<Option<Sent>, Error> {
        crate::read_one(&*self.kv, keys::gc_sent(node)).await
    }
}
