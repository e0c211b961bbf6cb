//! The auditor: workers that take jobs from the audit queues under claims and
//! challenge nodes for their pieces.
//!
//! A segment's audit challenges every node holding a piece of it (skipping nodes that
//! are disqualified, unknown or contained) with a GET_AUDIT order limit for one random
//! 16 KiB group of its piece: the node answers with the group and the BLAKE3 tree
//! hashes that tie it to the piece's hash, which the uplink signed at upload
//! ([`orbit_protocol::slices`]), so the auditor trusts nothing the node says. With
//! `mode = "whole"` the whole piece is downloaded and hashed instead.
//!
//! Outcomes, per node: *success*; *failure* (the piece is missing, the bytes or the
//! proof are wrong); *offline* (no connection); *contained* (connected, but no answer
//! within `timeout_s`: the node must prove that very slice later, and after
//! `max_reverify` timeouts in a row it counts as a failure); *unknown* (anything
//! else). A failed piece is removed from its segment (by compare on the segment's
//! revision), so the repair checker sees the segment as less healthy. Outcomes move
//! the node's reputation ([`orbit_satellite_model::reputation`]).

use futures::stream::{self, StreamExt};
use orbit_identity::{Identity, NodeId};
use orbit_kv::Kv;
use orbit_protocol::client as piece;
use orbit_protocol::{slices, Action};
use orbit_satellite_model::audit::{AuditJob, AuditQueue, Pending, ReverifyQueue};
use orbit_satellite_model::claims::ClaimLease;
use orbit_satellite_model::keys::StreamId;
use orbit_satellite_model::metainfo::{Metainfo, Segment};
use orbit_satellite_model::nodes::{NodeRecord, Nodes, SelectionConfig};
use orbit_satellite_model::orders::Orders;
use orbit_satellite_model::reputation::{AuditOutcome, ReputationConfig, ReputationEvent};
use orbit_satellite_model::unix_now;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `[audit]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Segments sampled per node per loop pass (the loop's audit observer).
    pub slots: usize,
    /// Audits one process runs at once.
    pub concurrency: usize,
    /// Seconds between looks at the queues (each drains what it can claim).
    pub interval_s: u64,
    /// TTL of the claims' lease: a dead process's jobs are free again after this.
    pub lease_ttl_s: i64,
    /// A node that connects but has not answered within this is contained, seconds.
    pub timeout_s: u64,
    /// Reverifications that time out before a contained node's audit fails.
    pub max_reverify: u32,
    /// Seconds a contained node gets between tries of its pending slice.
    pub reverify_after_s: u64,
    /// `slice` (a verified 16 KiB group of each piece) or `whole` (every byte).
    pub mode: String,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            slots: 3,
            concurrency: 8,
            interval_s: 30,
            lease_ttl_s: 30,
            timeout_s: 10,
            max_reverify: 3,
            reverify_after_s: 60,
            mode: "slice".into(),
        }
    }
}

/// What the auditor has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Segments audited.
    pub segments: u64,
    /// Reverifications run.
    pub reverifications: u64,
    /// Piece audits by outcome.
    pub success: u64,
    /// Failures.
    pub failure: u64,
    /// Offline.
    pub offline: u64,
    /// Contained.
    pub contained: u64,
    /// Unknown.
    pub unknown: u64,
    /// Pieces removed from their segments after a failure.
    pub pieces_removed: u64,
    /// Bytes the nodes sent (slices with their proofs, or whole pieces).
    pub bytes_moved: u64,
    /// Nodes disqualified by this process's audits.
    pub disqualified: u64,
    /// The last error of a job, if any.
    pub last_error: Option<String>,
}

/// One piece's audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PieceAudit {
    /// The node.
    pub node: NodeId,
    /// The piece's number.
    pub piece: u16,
    /// What it came to.
    pub outcome: AuditOutcome,
    /// Why, for anything but a success.
    pub detail: String,
}

/// An audit process's workers' shared state.
pub struct Auditor {
    name: String,
    metainfo: Metainfo,
    nodes: Nodes,
    queue: AuditQueue,
    reverify: ReverifyQueue,
    orders: Orders,
    identity: Identity,
    section: AuditSection,
    reputation: ReputationConfig,
    lease: ClaimLease,
    stats: Mutex<AuditStats>,
}

/// Where a slice is: a random group of a piece of `size` bytes.
fn random_slice(size: u64) -> (u64, u64) {
    let groups = size.div_ceil(slices::GROUP).max(1);
    let offset = rand::thread_rng().gen_range(0..groups) * slices::GROUP;
    (offset, slices::GROUP.min(size - offset))
}

impl Auditor {
    /// An auditor named `name` (its claims say so), signing limits as the satellite
    /// `identity`.
    pub fn new(
        name: &str,
        kv: Arc<dyn Kv>,
        identity: Identity,
        section: AuditSection,
        reputation: ReputationConfig,
        order_expiration_s: u64,
    ) -> Auditor {
        Auditor {
            name: name.to_string(),
            metainfo: Metainfo::new(kv.clone()),
            nodes: Nodes::new(kv.clone(), SelectionConfig::default()),
            queue: AuditQueue::new(kv.clone()),
            reverify: ReverifyQueue::new(kv.clone()),
            orders: Orders::new(kv.clone(), identity.clone(), order_expiration_s),
            lease: ClaimLease::new(kv, section.lease_ttl_s, "audit"),
            identity,
            section,
            reputation,
            stats: Mutex::default(),
        }
    }

    /// The section it runs by.
    pub fn section(&self) -> &AuditSection {
        &self.section
    }

    /// What it has done so far.
    pub fn stats(&self) -> AuditStats {
        self.stats.lock().unwrap().clone()
    }

    /// Keeps the claims' lease alive (see [`ClaimLease::keep`]).
    pub async fn keep_lease(&self) -> Result<i64, String> {
        self.lease.keep().await
    }

    /// Gives the lease up (at shutdown): this process's claims are free at once.
    pub async fn revoke_lease(&self) {
        self.lease.revoke().await
    }

    /// Runs what it can claim now, `concurrency` at a time: pending reverifications
    /// first, then queued segments, until none is left unheld. Returns every piece
    /// audit.
    pub async fn run_once(&self) -> Result<Vec<PieceAudit>, String> {
        let lease = self.keep_lease().await?;
        // Pendings created during this run are not due in it: a contained node gets
        // `reverify_after_s` at least.
        let started = unix_now();
        let lanes = (0..self.section.concurrency.max(1)).map(|_| self.lane(lease, started));
        let mut all = Vec::new();
        for r in futures::future::join_all(lanes).await {
            all.extend(r?);
        }
        Ok(all)
    }

    async fn lane(&self, lease: i64, started: u64) -> Result<Vec<PieceAudit>, String> {
        let mut out = Vec::new();
        let after = self.section.reverify_after_s.max(1);
        let due = |p: &Pending| started >= p.last_attempt.saturating_add(after);
        loop {
            let pending = self
                .reverify
                .claim(&self.name, lease, &due)
                .await
                .map_err(|e| format!("claiming a reverification: {e}"))?;
            if let Some(p) = pending {
                let r = self.reverify_one(&p).await;
                let settled = match &r {
                    Ok((_, next)) => self.reverify.settle(&p.node, next.as_ref()).await,
                    // Left for a later run (not this one: it would only fail again).
                    Err(_) => {
                        let later = Pending {
                            last_attempt: unix_now(),
                            ..p.clone()
                        };
                        self.reverify.settle(&p.node, Some(&later)).await
                    }
                };
                settled.map_err(|e| format!("settling a reverification: {e}"))?;
                match r {
                    Ok((a, _)) => out.extend(a),
                    Err(e) => self.stats.lock().unwrap().last_error = Some(e),
                }
                continue;
            }
            let job = self
                .queue
                .claim(&self.name, lease)
                .await
                .map_err(|e| format!("claiming an audit: {e}"))?;
            let Some(job) = job else {
                return Ok(out);
            };
            match self.audit_segment(&job).await {
                Ok(a) => out.extend(a),
                Err(e) => self.stats.lock().unwrap().last_error = Some(e),
            }
            self.queue
                .done(&job)
                .await
                .map_err(|e| format!("finishing an audit: {e}"))?;
        }
    }

    /// Audits every piece of a queued segment.
    pub async fn audit_segment(&self, job: &AuditJob) -> Result<Vec<PieceAudit>, String> {
        let err =
            |what: &'static str| move |e: orbit_satellite_model::Error| format!("{what}: {e}");
        let Some((seg, _)) = self
            .metainfo
            .segment_at(&job.stream, job.index)
            .await
            .map_err(err("reading the segment"))?
        else {
            return Ok(Vec::new());
        };
        if seg.inline.is_some() || seg.pieces.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<NodeId> = seg.pieces.iter().map(|p| p.1).collect();
        let records = self
            .nodes
            .get_many(&ids)
            .await
            .map_err(err("reading the segment's nodes"))?;
        let contained: HashSet<NodeId> = self
            .reverify
            .all()
            .await
            .map_err(err("reading the contained nodes"))?
            .into_iter()
            .map(|p| p.node)
            .collect();
        let targets: Vec<(u16, NodeRecord)> = seg
            .pieces
            .iter()
            .filter_map(|(num, id)| Some((*num, records.get(id)?.clone())))
            .filter(|(_, n)| !n.disqualified && !contained.contains(&n.id))
            .collect();
        let audits: Vec<(PieceAudit, (u64, u64))> = stream::iter(targets)
            .map(|(num, node)| {
                let seg = &seg;
                async move {
                    let slice = random_slice(seg.piece_size);
                    let (outcome, detail) = self.challenge(&node, seg, num, slice).await;
                    let a = PieceAudit {
                        node: node.id,
                        piece: num,
                        outcome,
                        detail,
                    };
                    (a, slice)
                }
            })
            .buffer_unordered(seg.pieces.len().max(1))
            .collect()
            .await;
        for (a, (offset, len)) in &audits {
            if a.outcome == AuditOutcome::Contained {
                let pending = Pending {
                    node: a.node,
                    stream: job.stream,
                    index: job.index,
                    piece: a.piece,
                    offset: *offset,
                    len: *len,
                    attempts: 0,
                    inserted: unix_now(),
                    last_attempt: unix_now(),
                };
                let new = self
                    .reverify
                    .contain(&pending)
                    .await
                    .map_err(err("containing a node"))?;
                if new {
                    tracing::warn!(node = %a.node, piece = a.piece, reason = %a.detail, "audit: node contained");
                }
            }
        }
        let audits: Vec<PieceAudit> = audits.into_iter().map(|(a, _)| a).collect();
        self.conclude(&job.stream, job.index, &audits).await?;
        self.stats.lock().unwrap().segments += 1;
        Ok(audits)
    }

    /// Re-challenges a contained node for its pending slice: the outcomes, and what
    /// stays pending (`None`: nothing).
    async fn reverify_one(
        &self,
        p: &Pending,
    ) -> Result<(Vec<PieceAudit>, Option<Pending>), String> {
        let err =
            |what: &'static str| move |e: orbit_satellite_model::Error| format!("{what}: {e}");
        self.stats.lock().unwrap().reverifications += 1;
        let seg = self
            .metainfo
            .segment_at(&p.stream, p.index)
            .await
            .map_err(err("reading the segment"))?;
        // The piece is no longer the node's to prove: nothing to hold against it.
        let Some((seg, _)) = seg.filter(|(s, _)| s.pieces.contains(&(p.piece, p.node))) else {
            return Ok((Vec::new(), None));
        };
        let Some(node) = self
            .nodes
            .get(&p.node)
            .await
            .map_err(err("reading the node"))?
        else {
            return Ok((Vec::new(), None));
        };
        if node.disqualified {
            return Ok((Vec::new(), None));
        }
        let (mut outcome, mut detail) = self
            .challenge(&node, &seg, p.piece, (p.offset, p.len))
            .await;
        let next = match outcome {
            AuditOutcome::Contained if p.attempts + 1 >= self.section.max_reverify => {
                detail = format!(
                    "{} reverifications in a row timed out: {detail}",
                    p.attempts + 1
                );
                outcome = AuditOutcome::Failure;
                None
            }
            AuditOutcome::Contained => Some(Pending {
                attempts: p.attempts + 1,
                last_attempt: unix_now(),
                ..p.clone()
            }),
            // Offline: it must still prove the piece when it is back.
            AuditOutcome::Offline => Some(Pending {
                last_attempt: unix_now(),
                ..p.clone()
            }),
            AuditOutcome::Success | AuditOutcome::Failure | AuditOutcome::Unknown => None,
        };
        if next.is_none() {
            tracing::info!(node = %p.node, ?outcome, "audit: reverification settled");
        }
        let audits = vec![PieceAudit {
            node: p.node,
            piece: p.piece,
            outcome,
            detail,
        }];
        self.conclude(&p.stream, p.index, &audits).await?;
        Ok((audits, next))
    }

    /// Books piece audits: removes failed pieces from the segment, applies every
    /// outcome to its node's reputation and logs changes of standing.
    async fn conclude(
        &self,
        stream: &StreamId,
        index: u32,
        audits: &[PieceAudit],
    ) -> Result<(), String> {
        let failed: Vec<(u16, NodeId)> = audits
            .iter()
            .filter(|a| a.outcome == AuditOutcome::Failure)
            .map(|a| (a.piece, a.node))
            .collect();
        let removed = self.remove_pieces(stream, index, &failed).await?;
        let now = unix_now();
        let mut disqualified = 0;
        // Each node's record is its own: all are written at once.
        let recorded = futures::future::join_all(audits.iter().map(|a| async move {
            self.nodes
                .record_audits(&a.node, &[a.outcome], &self.reputation, now)
                .await
                .map_err(|e| format!("recording an audit of {}: {e}", a.node))
        }))
        .await;
        for (a, r) in audits.iter().zip(recorded) {
            if a.outcome == AuditOutcome::Failure {
                tracing::warn!(node = %a.node, piece = a.piece, reason = %a.detail, "audit failed");
            }
            let (_, events) = r?;
            for e in events {
                match e {
                    ReputationEvent::Disqualified { reason } => {
                        disqualified += 1;
                        tracing::error!(node = %a.node, %reason, "node disqualified");
                    }
                    ReputationEvent::Suspended { reason } => {
                        tracing::warn!(node = %a.node, %reason, "node suspended")
                    }
                    ReputationEvent::Unsuspended => {
                        tracing::info!(node = %a.node, "node unsuspended")
                    }
                    ReputationEvent::Vetted => tracing::info!(node = %a.node, "node vetted"),
                }
            }
        }
        let m = &*crate::metrics::METRICS;
        m.pieces_removed.inc_by(removed);
        m.disqualified.inc_by(disqualified);
        let mut s = self.stats.lock().unwrap();
        s.pieces_removed += removed;
        s.disqualified += disqualified;
        for a in audits {
            m.audits
                .get_or_create(&[("outcome", format!("{:?}", a.outcome).to_lowercase())])
                .inc();
            match a.outcome {
                AuditOutcome::Success => s.success += 1,
                AuditOutcome::Failure => s.failure += 1,
                AuditOutcome::Offline => s.offline += 1,
                AuditOutcome::Contained => s.contained += 1,
                AuditOutcome::Unknown => s.unknown += 1,
            }
        }
        Ok(())
    }

    /// Removes `failed` pieces from the segment (by compare on its revision, read
    /// again when it changed meanwhile). Returns how many went.
    async fn remove_pieces(
        &self,
        stream: &StreamId,
        index: u32,
        failed: &[(u16, NodeId)],
    ) -> Result<u64, String> {
        if failed.is_empty() {
            return Ok(0);
        }
        for _ in 0..16 {
            let Some((mut seg, rev)) = self
                .metainfo
                .segment_at(stream, index)
                .await
                .map_err(|e| format!("reading the segment: {e}"))?
            else {
                return Ok(0);
            };
            let before = seg.pieces.len();
            seg.pieces.retain(|p| !failed.contains(p));
            let gone = (before - seg.pieces.len()) as u64;
            if gone == 0 {
                return Ok(0);
            }
            if self
                .metainfo
                .replace_segment(stream, &seg, rev, None)
                .await
                .map_err(|e| format!("removing failed pieces: {e}"))?
            {
                return Ok(gone);
            }
        }
        Err("the segment keeps changing; failed pieces stay for the next audit".into())
    }

    /// Challenges `node` for `[offset, offset + len)` of piece `num` of `seg`.
    async fn challenge(
        &self,
        node: &NodeRecord,
        seg: &Segment,
        num: u16,
        (offset, len): (u64, u64),
    ) -> (AuditOutcome, String) {
        let whole = self.section.mode == "whole";
        let bytes = if whole { seg.piece_size } else { len };
        let limit = self.orders.limit(
            node,
            seg.root.derive(&node.id, num),
            Action::GetAudit,
            bytes,
            self.identity.public(),
            unix_now(),
        );
        let sat = self.identity.public();
        // Reached or not is decided by a plain TCP connection: a node whose process
        // accepts nothing is offline; one that accepts and then stays silent (hung,
        // overloaded, or stalling on purpose) is contained below.
        if let Err(why) = reachable(&node.address).await {
            return (AuditOutcome::Offline, why);
        }
        let work = async {
            let mut c = piece::connect(&node.address, &node.id).await?;
            if whole {
                piece::download(&mut c, &limit, seg.piece_size, &self.identity, &sat)
                    .await
                    .map(|(d, _)| d.len() as u64)
            } else {
                piece::download_slice(&mut c, &limit, offset, len, &self.identity, &sat)
                    .await
                    .map(|(_, _, moved)| moved)
            }
        };
        let t = Duration::from_secs(self.section.timeout_s.max(1));
        let r = match tokio::time::timeout(t, work).await {
            Err(_) => return (AuditOutcome::Contained, format!("no answer within {t:?}")),
            Ok(r) => r,
        };
        match r {
            Ok(moved) => {
                self.stats.lock().unwrap().bytes_moved += moved;
                (AuditOutcome::Success, String::new())
            }
            Err(e) => classify(e),
        }
    }
}

/// How long a node has to accept a TCP connection before it counts as offline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the node at `url` (`https://host:port`) accepts a TCP connection.
async fn reachable(url: &str) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host_port)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Err(_) => Err(format!(
            "connecting to {url}: no answer within {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// What a failed challenge counts as.
fn classify(e: piece::TransferError) -> (AuditOutcome, String) {
    use tonic::Code;
    let outcome = match &e {
        piece::TransferError::Bad(_) => AuditOutcome::Failure,
        piece::TransferError::Connect { .. } => AuditOutcome::Offline,
        piece::TransferError::Node(s) => match s.code() {
            // It does not have the piece, its bytes rotted, or it denies a range the
            // signed hash says the piece has.
            Code::NotFound | Code::DataLoss | Code::OutOfRange => AuditOutcome::Failure,
            Code::Unavailable => AuditOutcome::Offline,
            Code::DeadlineExceeded => AuditOutcome::Contained,
            _ => AuditOutcome::Unknown,
        },
    };
    (outcome, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_whole_groups_within_the_piece() {
        for size in [1u64, 1000, 16384, 16385, 300_000] {
            for _ in 0..100 {
                let (o, l) = random_slice(size);
                assert_eq!(o % slices::GROUP, 0);
                assert!(
                    l > 0 && o + l <= size && l <= slices::GROUP,
                    "{size}: {o}+{l}"
                );
            }
        }
    }
}
