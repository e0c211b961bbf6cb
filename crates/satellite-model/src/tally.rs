//! Tallies in the store (keys in [`crate::keys`]): what each node stores and what each
//! bucket holds, as one complete loop pass counted it, with the interval since the
//! tally before; accounting folds them into rollups.

use crate::keys::{self, Bucket, Project};
use crate::Error;
use orbit_identity::NodeId;
use orbit_kv::record::encode;
use orbit_kv::{Kv, PutRequest, TxnOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What one node stored at a tally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTally {
    /// The node.
    pub node: NodeId,
    /// Unix time (s) of the tally.
    pub at: u64,
    /// Seconds since the tally before (0 for the first).
    pub interval_s: u64,
    /// Piece bytes it holds.
    pub bytes: u64,
    /// Pieces it holds.
    pub pieces: u64,
    /// Byte-hours stored since the tally before: its bytes over the interval.
    pub byte_hours: f64,
}

crate::versioned_v1!(NodeTally, "node tally");

/// What one bucket held at a tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTally {
    /// The project.
    pub project: String,
    /// The bucket.
    pub bucket: String,
    /// Unix time (s) of the tally.
    pub at: u64,
    /// Seconds since the tally before (0 for the first).
    pub interval_s: u64,
    /// Encrypted bytes of its segments (remote and inline).
    pub bytes: u64,
    /// Of those, inline bytes.
    pub inline_bytes: u64,
    /// Segments.
    pub segments: u64,
    /// Committed objects.
    pub objects: u64,
}

crate::versioned_v1!(BucketTally, "bucket tally");

/// When the last tally was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTally {
    /// Unix time (s).
    pub at: u64,
    /// The loop pass (store revision) it came from.
    pub pass: i64,
}

crate::versioned_v1!(LastTally, "last tally record");

/// Tallies.
#[derive(Clone)]
pub struct Tallies {
    kv: Arc<dyn Kv>,
}

impl Tallies {
    /// The tallies in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Tallies {
        Tallies { kv }
    }

    /// The last tally's time and pass.
    pub async fn last(&self) -> Result<Option<LastTally>, Error> {
        crate::read_one(&*self.kv, keys::TALLY_LAST).await
    }

    /// Writes one tally: every node's and bucket's, then the last-tally record; then
    /// drops the added-segment records the tally's pass has counted.
    pub async fn write(
        &self,
        last: &LastTally,
        nodes: &[NodeTally],
        buckets: &[BucketTally],
    ) -> Result<(), Error> {
        let mut ops = Vec::with_capacity(nodes.len() + buckets.len());
        for n in nodes {
            ops.push(TxnOp::Put(PutRequest::new(
                keys::tally_node(n.at, &n.node),
                encode(n),
            )));
        }
        for b in buckets {
            let (p, bk) = (Project::new(&b.project)?, Bucket::new(&b.bucket)?);
            ops.push(TxnOp::Put(PutRequest::new(
                keys::tally_bucket(b.at, &p, &bk),
                encode(b),
            )));
        }
        crate::write_batches(&*self.kv, ops).await?;
        self.kv
            .put(PutRequest::new(keys::TALLY_LAST, encode(last)))
            .await?;
        // The segments this pass counted no longer need counting on their own.
        crate::accounting::Usage::new(self.kv.clone())
            .prune_added(last.pass)
            .await?;
        Ok(())
    }

    /// Every node tally kept.
    pub async fn nodes(&self) -> Result<Vec<NodeTally>, Error> {
        crate::read_prefix(&*self.kv, keys::TALLY_NODES).await
    }

    /// Every bucket tally kept.
    pub async fn buckets(&self) -> Result<Vec<BucketTally>, Error> {
        crate::read_prefix(&*self.kv, keys::TALLY_BUCKETS).await
    }
}
