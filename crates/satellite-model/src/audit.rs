//! The audit queues (keys in [`crate::keys`]).
//!
//! The *verification queue* holds the segments the audit observer sampled in the last
//! complete loop pass, one entry per segment; each new sample replaces the entries of
//! older passes. The *reverification queue* holds, per contained node (one that was
//! reached but timed out), the very piece and slice it must prove next; a node has at
//! most one. Workers take jobs of either through claims under their lease
//! ([`crate::claims`]).

use crate::keys::{self, StreamId};
use crate::{claims, decode, Error};
use orbit_identity::NodeId;
use orbit_kv::record::encode;
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, PutRequest, Scan, TxnOp, TxnRequest,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A segment to audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditJob {
    /// Its stream.
    pub stream: StreamId,
    /// Its index.
    pub index: u32,
    /// Revision of the loop pass that sampled it.
    pub pass: i64,
    /// Unix time (s) it was queued.
    pub inserted: u64,
}

crate::versioned_v1!(AuditJob, "audit job");

/// A contained node's pending reverification: the piece and slice it must prove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The node.
    pub node: NodeId,
    /// The segment's stream.
    pub stream: StreamId,
    /// The segment's index.
    pub index: u32,
    /// The piece's number.
    pub piece: u16,
    /// The slice's start in the piece.
    pub offset: u64,
    /// The slice's length.
    pub len: u64,
    /// Reverifications that timed out so far.
    pub attempts: u32,
    /// Unix time (s) the node was contained.
    pub inserted: u64,
    /// Unix time (s) of the last try (the containing audit, then each reverification).
    pub last_attempt: u64,
}

crate::versioned_v1!(Pending, "pending reverification");

/// The verification queue.
#[derive(Clone)]
pub struct AuditQueue {
    kv: Arc<dyn Kv>,
}

impl AuditQueue {
    /// The queue in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> AuditQueue {
        AuditQueue { kv }
    }

    /// Queues the segments `jobs` sampled by the pass at revision `pass` at `now`,
    /// then drops the entries of older passes (new ones first, so the queue is never
    /// empty between samples). Returns the entries dropped.
    pub async fn replace(
        &self,
        jobs: &[(StreamId, u32)],
        pass: i64,
        now: u64,
    ) -> Result<usize, Error> {
        let ops = jobs
            .iter()
            .map(|(stream, index)| {
                let job = AuditJob {
                    stream: *stream,
                    index: *index,
                    pass,
                    inserted: now,
                };
                TxnOp::Put(PutRequest::new(
                    keys::audit_job(stream, *index),
                    encode(&job),
                ))
            })
            .collect();
        crate::write_batches(&*self.kv, ops).await?;
        let mut dropped = 0;
        let mut scan = Scan::prefix(&*self.kv, keys::AUDIT_QUEUE, 500);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let job: AuditJob = decode(&kv.key, &kv.value)?;
                if job.pass >= pass {
                    continue;
                }
                // Only as read: a newer sample's entry for the segment stays.
                let txn = TxnRequest::if_unchanged(
                    kv.key.clone(),
                    kv.mod_revision,
                    vec![TxnOp::Delete(DeleteRequest::key(kv.key.clone()))],
                );
                dropped += usize::from(self.kv.txn(txn).await?.succeeded);
            }
        }
        Ok(dropped)
    }

    /// Takes a queued segment nobody audits, for `holder` under `lease`.
    pub async fn claim(&self, holder: &str, lease: i64) -> Result<Option<AuditJob>, Error> {
        let mut scan = Scan::prefix(&*self.kv, keys::AUDIT_QUEUE, 64);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let job: AuditJob = decode(&kv.key, &kv.value)?;
                let claim = keys::audit_segment_claim(&job.stream, job.index);
                let guard = Some((
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                ));
                if claims::take(&*self.kv, claim, holder, lease, guard).await? {
                    return Ok(Some(job));
                }
            }
        }
        Ok(None)
    }

    /// Who audits a segment now, if anyone.
    pub async fn holder(&self, stream: &StreamId, index: u32) -> Result<Option<String>, Error> {
        claims::holder(&*self.kv, keys::audit_segment_claim(stream, index)).await
    }

    /// A job is done: its entry and claim go.
    pub async fn done(&self, job: &AuditJob) -> Result<(), Error> {
        let entry = keys::audit_job(&job.stream, job.index);
        // A newer sample's entry for the same segment stays queued.
        self.kv
            .txn(TxnRequest {
                compare: vec![Compare::new(
                    entry.clone(),
                    CompareOp::Equal,
                    CompareTarget::Value(encode(job)),
                )],
                success: vec![TxnOp::Delete(DeleteRequest::key(entry))],
                failure: Vec::new(),
            })
            .await?;
        claims::release(&*self.kv, keys::audit_segment_claim(&job.stream, job.index)).await
    }

    /// Every queued job.
    pub async fn jobs(&self) -> Result<Vec<AuditJob>, Error> {
        crate::read_prefix(&*self.kv, keys::AUDIT_QUEUE).await
    }
}

/// The reverification queue.
#[derive(Clone)]
pub struct ReverifyQueue {
    kv: Arc<dyn Kv>,
}

impl ReverifyQueue {
    /// The queue in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> ReverifyQueue {
        ReverifyQueue { kv }
    }

    /// Contains a node: it must prove `pending`'s piece next. False when it is
    /// contained already (for another piece, which it must prove first).
    pub async fn contain(&self, pending: &Pending) -> Result<bool, Error> {
        let key = keys::audit_reverify(&pending.node);
        let txn = TxnRequest {
            compare: vec![Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::Create(0),
            )],
            success: vec![TxnOp::Put(PutRequest::new(key, encode(pending)))],
            failure: Vec::new(),
        };
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// A node's pending reverification.
    pub async fn get(&self, node: &NodeId) -> Result<Option<Pending>, Error> {
        crate::read_one(&*self.kv, keys::audit_reverify(node)).await
    }

    /// Every pending reverification.
    pub async fn all(&self) -> Result<Vec<Pending>, Error> {
        crate::read_prefix(&*self.kv, keys::AUDIT_REVERIFY).await
    }

    /// Takes a pending reverification nobody works on and `eligible` allows (its
    /// node has had time since the last try), for `holder` under `lease`.
    pub async fn claim(
        &self,
        holder: &str,
        lease: i64,
        eligible: &(dyn Fn(&Pending) -> bool + Sync),
    ) -> Result<Option<Pending>, Error> {
        let mut scan = Scan::prefix(&*self.kv, keys::AUDIT_REVERIFY, 64);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let p: Pending = decode(&kv.key, &kv.value)?;
                if !eligible(&p) {
                    continue;
                }
                let claim = keys::audit_node_claim(&p.node);
                let guard = Some((
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                ));
                if claims::take(&*self.kv, claim, holder, lease, guard).await? {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    /// Settles a claimed reverification: `Some` writes it back (another timeout
    /// counted), `None` removes it (the node proved the piece, failed, or the piece is
    /// gone); then the claim goes.
    pub async fn settle(&self, node: &NodeId, next: Option<&Pending>) -> Result<(), Error> {
        let key = keys::audit_reverify(node);
        match next {
            Some(p) => self
                .kv
                .put(PutRequest::new(key, encode(p)))
                .await
                .map(|_| ())?,
            None => self.kv.delete(DeleteRequest::key(key)).await.map(|_| ())?,
        }
        claims::release(&*self.kv, keys::audit_node_claim(node)).await
    }
}
