//! The repairer: workers that take injured segments from the repair queue and rebuild
//! their missing pieces on new nodes.
//!
//! A job is claimed under the process's lease (see [`RepairQueue::claim`]), so two
//! workers never repair one segment at once and a dead worker's jobs are free again
//! once its lease runs out. A repair re-reads the segment, downloads `k` good pieces
//! with GET_REPAIR limits (each checked against its signed hash; a piece that fails is
//! replaced by another and dropped from the segment), rebuilds the segment, uploads
//! the pieces it lacks with PUT_REPAIR limits to nodes that are neither the segment's
//! nor in its pieces' networks, and commits the new piece list only if the segment is
//! unchanged since it was read and the claim is still held. Nothing is written for a
//! segment with fewer than `k` retrievable pieces. A failed repair counts an attempt
//! and waits a back-off that doubles per attempt.

use futures::stream::{FuturesUnordered, StreamExt};
use orbit_identity::{Identity, NodeId};
use orbit_kv::Kv;
use orbit_protocol::client as piece;
use orbit_protocol::{Action, OrderLimit};
use orbit_satellite_model::claims::ClaimLease;
use orbit_satellite_model::keys::StreamId;
use orbit_satellite_model::metainfo::{Metainfo, Segment};
use orbit_satellite_model::nodes::{network_of, Exclude, NodeRecord, Nodes, SelectionConfig};
use orbit_satellite_model::orders::{LimitFor, Orders};
use orbit_satellite_model::repair::{health, HealthRules, PieceState, RepairEntry, RepairQueue};
use orbit_satellite_model::unix_now;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `[repair]` section: how much a repair process does at once and how it retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairSection {
    /// Repairs one process runs at once.
    pub concurrency: usize,
    /// Seconds between looks at the queue (a look drains what it can claim).
    pub interval_s: u64,
    /// TTL of the lease the process's claims live under, seconds: a dead process's
    /// jobs are free again about this long after it died.
    pub lease_ttl_s: i64,
    /// Back-off after a failed attempt, seconds; it doubles with every attempt.
    pub retry_s: u64,
    /// Longest back-off, seconds.
    pub max_retry_s: u64,
    /// A repair taking longer than this is abandoned and counted as failed, seconds.
    pub timeout_s: u64,
    /// One piece transfer taking longer than this fails, seconds.
    pub piece_timeout_s: u64,
    /// Pieces downloaded at once beyond `k`; the first `k` good ones are used.
    pub download_margin: usize,
}

impl Default for RepairSection {
    fn default() -> Self {
        RepairSection {
            concurrency: 4,
            interval_s: 30,
            lease_ttl_s: 30,
            retry_s: 60,
            max_retry_s: 3600,
            timeout_s: 600,
            piece_timeout_s: 60,
            download_margin: 2,
        }
    }
}

impl RepairSection {
    /// Seconds to wait after the `attempts`-th failure before trying again.
    pub fn back_off(&self, attempts: u32) -> u64 {
        if attempts == 0 {
            return 0;
        }
        let doubled = self.retry_s.saturating_mul(1u64 << (attempts - 1).min(30));
        doubled.min(self.max_retry_s)
    }
}

/// How one repair ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New pieces were uploaded and the segment's piece list was replaced.
    Repaired {
        /// Healthy pieces kept.
        kept: u32,
        /// Pieces rebuilt and uploaded.
        uploaded: u32,
        /// Pieces dropped because their node sent bytes that failed their hash or
        /// no longer had them.
        dropped_bad: u32,
    },
    /// Re-read, the segment needed no repair (its nodes came back, or another
    /// repair got there first).
    Healthy,
    /// The segment is gone (its object was deleted or overwritten).
    Gone,
    /// The segment changed (or the claim was lost) between reading it and committing
    /// the repair: nothing was written.
    Changed,
    /// Fewer than `k` pieces are retrievable: nothing was written.
    Lost {
        /// Pieces that could still be downloaded.
        retrievable: u32,
    },
    /// The repair could not finish (too few good pieces downloaded, too few nodes or
    /// uploads); it is retried after a back-off.
    Failed(String),
}

impl Outcome {
    /// Its name, as the metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Repaired { .. } => "repaired",
            Outcome::Healthy => "healthy",
            Outcome::Gone => "gone",
            Outcome::Changed => "changed",
            Outcome::Lost { .. } => "lost",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// What a repair process has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepairStats {
    /// Segments repaired.
    pub repaired: u64,
    /// Jobs dropped because the segment was healthy on re-reading.
    pub healthy: u64,
    /// Jobs dropped because the segment was gone.
    pub gone: u64,
    /// Repairs abandoned because the segment changed meanwhile.
    pub changed: u64,
    /// Jobs whose segment had fewer than `k` retrievable pieces.
    pub lost: u64,
    /// Repairs that failed (retried later).
    pub failed: u64,
    /// Pieces uploaded by repairs.
    pub pieces_uploaded: u64,
    /// Pieces dropped from segments because they failed their hash or were gone.
    pub pieces_dropped_bad: u64,
    /// Piece bytes downloaded.
    pub bytes_downloaded: u64,
    /// Piece bytes uploaded.
    pub bytes_uploaded: u64,
    /// Repairs running now.
    pub in_flight: u64,
    /// The last failure, if any.
    pub last_failure: Option<String>,
}

/// A repair process's workers' shared state.
pub struct Repairer {
    name: String,
    metainfo: Metainfo,
    nodes: Nodes,
    queue: RepairQueue,
    orders: Orders,
    identity: Identity,
    rules: HealthRules,
    section: RepairSection,
    /// The lease claims live under.
    lease: ClaimLease,
    stats: Mutex<RepairStats>,
}

/// A piece download's result: its bytes, or why not and whether to drop the piece.
enum Fetched {
    Good(u16, Vec<u8>),
    /// The node answered with something that does not verify, or without the piece.
    Bad(u16, String),
    /// The node could not be reached or failed otherwise: the piece may be fine.
    Unreachable(String),
}

impl Repairer {
    /// A repairer named `name` (its claims say so), signing limits as the satellite
    /// `identity`, judging pieces by `rules` and selecting nodes by `selection`.
    pub fn new(
        name: &str,
        kv: Arc<dyn Kv>,
        identity: Identity,
        selection: SelectionConfig,
        section: RepairSection,
        order_expiration_s: u64,
    ) -> Repairer {
        Repairer {
            lease: ClaimLease::new(kv.clone(), section.lease_ttl_s, "repair"),
            name: name.to_string(),
            metainfo: Metainfo::new(kv.clone()),
            rules: HealthRules {
                online_window_s: selection.online_window_s,
                distinct_networks: selection.distinct_networks,
            },
            nodes: Nodes::new(kv.clone(), selection),
            queue: RepairQueue::new(kv.clone()),
            orders: Orders::new(kv.clone(), identity.clone(), order_expiration_s),
            identity,
            section,
            stats: Mutex::default(),
        }
    }

    /// The section it runs by.
    pub fn section(&self) -> &RepairSection {
        &self.section
    }

    /// What it has done so far.
    pub fn stats(&self) -> RepairStats {
        self.stats.lock().unwrap().clone()
    }

    /// Keeps the claims' lease alive, granting a new one when it ran out (claims
    /// under the old one are then free for others; a repair still running under it
    /// cannot commit). Returns the lease.
    pub async fn keep_lease(&self) -> Result<i64, String> {
        self.lease.keep().await
    }

    /// Gives the lease up (at shutdown): this process's claims are free at once.
    pub async fn revoke_lease(&self) {
        self.lease.revoke().await
    }

    /// Repairs what it can claim now, `concurrency` at a time, until nothing is left
    /// that is unheld and past its back-off. Returns the outcomes.
    pub async fn run_once(&self) -> Result<Vec<Outcome>, String> {
        let lease = self.keep_lease().await?;
        self.nodes
            .refresh()
            .await
            .map_err(|e| format!("reading the node table: {e}"))?;
        let lanes = (0..self.section.concurrency.max(1)).map(|_| self.lane(lease));
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for r in futures::future::join_all(lanes).await {
            match r {
                Ok(o) => outcomes.extend(o),
                Err(e) => errors.push(e),
            }
        }
        match errors.first() {
            Some(e) => Err(e.clone()),
            None => Ok(outcomes),
        }
    }

    /// One lane: claims and repairs one job after another.
    async fn lane(&self, lease: i64) -> Result<Vec<Outcome>, String> {
        let mut outcomes = Vec::new();
        loop {
            let now = unix_now();
            let eligible = |e: &RepairEntry| {
                e.last_attempt == 0 || now >= e.last_attempt + self.section.back_off(e.attempts)
            };
            let entry = self
                .queue
                .claim(&self.name, lease, &eligible)
                .await
                .map_err(|e| format!("claiming a repair: {e}"))?;
            let Some(entry) = entry else {
                return Ok(outcomes);
            };
            outcomes.push(self.job(&entry, lease).await?);
        }
    }

    /// Runs one claimed job and books its outcome in the queue and the stats.
    async fn job(&self, entry: &RepairEntry, lease: i64) -> Result<Outcome, String> {
        self.stats.lock().unwrap().in_flight += 1;
        let started = std::time::Instant::now();
        let limit = Duration::from_secs(self.section.timeout_s.max(1));
        let outcome = match tokio::time::timeout(limit, self.repair(entry, lease)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!("took longer than {limit:?}")),
        };
        let (stream, index) = (&entry.stream, entry.index);
        let booked = match &outcome {
            Outcome::Repaired { .. } | Outcome::Healthy | Outcome::Gone => {
                self.queue.remove(stream, index).await
            }
            Outcome::Changed | Outcome::Lost { .. } | Outcome::Failed(_) => {
                self.queue.attempted(stream, index, unix_now()).await
            }
        };
        let released = self.queue.release(stream, index).await;
        let m = &*crate::metrics::METRICS;
        m.seconds.observe(started.elapsed().as_secs_f64());
        m.jobs
            .get_or_create(&[("outcome", outcome.name().into())])
            .inc();
        if let Outcome::Repaired { uploaded, .. } = &outcome {
            m.uploaded.inc_by(*uploaded as u64);
        }
        {
            let mut s = self.stats.lock().unwrap();
            s.in_flight -= 1;
            match &outcome {
                Outcome::Repaired {
                    uploaded,
                    dropped_bad,
                    ..
                } => {
                    s.repaired += 1;
                    s.pieces_uploaded += *uploaded as u64;
                    s.pieces_dropped_bad += *dropped_bad as u64;
                }
                Outcome::Healthy => s.healthy += 1,
                Outcome::Gone => s.gone += 1,
                Outcome::Changed => s.changed += 1,
                Outcome::Lost { .. } => s.lost += 1,
                Outcome::Failed(why) => {
                    s.failed += 1;
                    s.last_failure = Some(why.clone());
                }
            }
        }
        let seg = segment_name(stream, index);
        match &outcome {
            Outcome::Repaired { .. } => {
                tracing::info!(segment = %seg, ?outcome, "segment repaired")
            }
            Outcome::Lost { retrievable } => tracing::error!(
                segment = %seg,
                retrievable,
                k = entry.k,
                "segment lost: too few pieces left to rebuild it"
            ),
            Outcome::Failed(why) => tracing::warn!(segment = %seg, %why, "repair failed"),
            _ => tracing::debug!(segment = %seg, ?outcome, "repair job done"),
        }
        booked.map_err(|e| format!("booking a repair of {seg}: {e}"))?;
        released.map_err(|e| format!("releasing the claim on {seg}: {e}"))?;
        Ok(outcome)
    }

    /// Repairs one segment (see the module's documentation).
    async fn repair(&self, entry: &RepairEntry, lease: i64) -> Result<Outcome, String> {
        let err = |what: &str| {
            let what = what.to_string();
            move |e: orbit_satellite_model::Error| format!("{what}: {e}")
        };
        let Some((seg, rev)) = self
            .metainfo
            .segment_at(&entry.stream, entry.index)
            .await
            .map_err(err("reading the segment"))?
        else {
            return Ok(Outcome::Gone);
        };
        // Expired: gone for every reader; the loop and the nodes delete it.
        if seg.expires != 0 && seg.expires <= unix_now() {
            return Ok(Outcome::Gone);
        }
        if seg.inline.is_some() {
            return Ok(Outcome::Healthy);
        }
        let ids: Vec<NodeId> = seg.pieces.iter().map(|p| p.1).collect();
        let records = self
            .nodes
            .get_many(&ids)
            .await
            .map_err(err("reading the segment's nodes"))?;
        let now = unix_now();
        let h = health(&seg, &records, now, &self.rules);
        if !h.injured(&seg) {
            return Ok(Outcome::Healthy);
        }
        if h.lost(&seg) {
            return Ok(Outcome::Lost {
                retrievable: h.retrievable,
            });
        }
        // Healthy pieces first: clumped ones are only read when those fall short.
        let mut sources: Vec<(u16, &NodeRecord)> = Vec::new();
        for state in [
            PieceState::Healthy,
            PieceState::Clumped,
            PieceState::Suspended,
        ] {
            for (num, node, _) in h.pieces.iter().filter(|p| p.2 == state) {
                if let Some(rec) = records.get(node) {
                    sources.push((*num, rec));
                }
            }
        }
        let (got, bad, failures) = self.download(&seg, &sources).await;
        let k = seg.redundancy.k as usize;
        if got.len() < k {
            return Ok(Outcome::Failed(format!(
                "{} good pieces of {k} needed: {}",
                got.len(),
                failures.join("; ")
            )));
        }
        let rebuilt = rebuild(&seg, got).await?;

        let keep: Vec<(u16, NodeId)> = h
            .pieces
            .iter()
            .filter(|p| p.2 == PieceState::Healthy && !bad.contains(&p.0))
            .map(|p| (p.0, p.1))
            .collect();
        let r = seg.redundancy;
        let total = r.total as usize;
        // Healthy enough to leave the queue: above the repair threshold or at success.
        let enough = ((r.repair + 1).min(r.success)) as usize;
        let used: HashSet<u16> = keep.iter().map(|p| p.0).collect();
        let free: Vec<u16> = (0..r.total as u16).filter(|n| !used.contains(n)).collect();
        let want = total.saturating_sub(keep.len()).min(free.len());
        let needed = enough.saturating_sub(keep.len());
        let exclude = Exclude {
            nodes: seg.pieces.iter().map(|p| p.1).collect(),
            networks: match self.rules.distinct_networks {
                true => keep
                    .iter()
                    .filter_map(|p| records.get(&p.1))
                    .map(|n| network_of(&n.address))
                    .collect(),
                false => HashSet::new(),
            },
        };
        let targets = self
            .nodes
            .select_at_most(want, seg.piece_size, now, &exclude)
            .await
            .map_err(err("selecting nodes for the rebuilt pieces"))?;
        if targets.len() < needed {
            return Ok(Outcome::Failed(format!(
                "{} new nodes eligible (not the segment's, online, with space), {needed} needed",
                targets.len()
            )));
        }
        let uploaded = self.upload(&seg, &rebuilt, &free, &targets).await;
        let (placed, upload_failures): (Vec<_>, Vec<_>) =
            uploaded.into_iter().partition(Result::is_ok);
        let placed: Vec<(u16, NodeId)> = placed.into_iter().filter_map(Result::ok).collect();
        if keep.len() + placed.len() < enough {
            let why: Vec<String> = upload_failures
                .into_iter()
                .filter_map(Result::err)
                .collect();
            return Ok(Outcome::Failed(format!(
                "{} pieces kept and {} uploaded, {enough} needed: {}",
                keep.len(),
                placed.len(),
                why.join("; ")
            )));
        }
        let mut pieces = keep.clone();
        pieces.extend(placed.iter().copied());
        pieces.sort_by_key(|p| p.0);
        let repaired = Segment { pieces, ..seg };
        let written = self
            .metainfo
            .replace_segment(&entry.stream, &repaired, rev, Some(lease))
            .await
            .map_err(err("committing the repaired segment"))?;
        if !written {
            // The pieces just uploaded belong to nothing; garbage collection takes them.
            return Ok(Outcome::Changed);
        }
        Ok(Outcome::Repaired {
            kept: keep.len() as u32,
            uploaded: placed.len() as u32,
            dropped_bad: bad.len() as u32,
        })
    }

    /// Downloads `k` good pieces from `sources` (in order, `k` + margin at once; a
    /// failure starts the next one). Returns the good pieces, the numbers of pieces
    /// to drop, and every failure.
    async fn download(
        &self,
        seg: &Segment,
        sources: &[(u16, &NodeRecord)],
    ) -> (Vec<(usize, Vec<u8>)>, HashSet<u16>, Vec<String>) {
        let k = seg.redundancy.k as usize;
        let mut queue = sources.iter().rev().copied().collect::<Vec<_>>();
        let mut fetches = FuturesUnordered::new();
        let start = |(num, node): (u16, &NodeRecord)| {
            let limit = self.orders.limit(
                node,
                seg.root.derive(&node.id, num),
                Action::GetRepair,
                seg.piece_size,
                self.identity.public(),
                unix_now(),
            );
            self.fetch(num, node.address.clone(), limit, seg.piece_size)
        };
        while fetches.len() < k + self.section.download_margin {
            let Some(s) = queue.pop() else { break };
            fetches.push(start(s));
        }
        let (mut got, mut bad, mut failures) = (Vec::new(), HashSet::new(), Vec::new());
        while let Some(f) = fetches.next().await {
            match f {
                Fetched::Good(num, data) => {
                    self.stats.lock().unwrap().bytes_downloaded += data.len() as u64;
                    got.push((num as usize, data));
                    if got.len() >= k {
                        break;
                    }
                    continue;
                }
                Fetched::Bad(num, why) => {
                    bad.insert(num);
                    failures.push(why);
                }
                Fetched::Unreachable(why) => failures.push(why),
            }
            if let Some(s) = queue.pop() {
                fetches.push(start(s));
            }
        }
        (got, bad, failures)
    }

    /// Downloads one whole piece, verified against its signed hash.
    async fn fetch(&self, num: u16, url: String, limit: OrderLimit, size: u64) -> Fetched {
        let node = limit.node;
        let sat = self.identity.public();
        let work = async {
            let mut c = piece::connect(&url, &node).await?;
            piece::download(&mut c, &limit, size, &self.identity, &sat).await
        };
        let t = Duration::from_secs(self.section.piece_timeout_s.max(1));
        match tokio::time::timeout(t, work).await {
            Ok(Ok((data, _))) => Fetched::Good(num, data),
            Ok(Err(piece::TransferError::Bad(why))) => {
                Fetched::Bad(num, format!("piece {num} at node {node}: {why}"))
            }
            Ok(Err(piece::TransferError::Node(s)))
                if matches!(s.code(), tonic::Code::NotFound | tonic::Code::DataLoss) =>
            {
                Fetched::Bad(num, format!("piece {num} at node {node}: {}", s.message()))
            }
            Ok(Err(e)) => Fetched::Unreachable(format!("piece {num} at node {node}: {e}")),
            Err(_) => Fetched::Unreachable(format!("piece {num} at node {node}: timed out")),
        }
    }

    /// Uploads rebuilt pieces numbered from `numbers` to `targets`, one each, at once.
    async fn upload(
        &self,
        seg: &Segment,
        rebuilt: &[bytes::Bytes],
        numbers: &[u16],
        targets: &[NodeRecord],
    ) -> Vec<Result<(u16, NodeId), String>> {
        let t = Duration::from_secs(self.section.piece_timeout_s.max(1));
        let uploads = numbers.iter().zip(targets).map(|(&num, node)| {
            // A rebuilt piece expires with its object, as the original did.
            let limit = self.orders.limit_for(
                node,
                seg.root.derive(&node.id, num),
                Action::PutRepair,
                seg.piece_size,
                self.identity.public(),
                unix_now(),
                LimitFor {
                    piece_expiration: seg.expires,
                    bucket: None,
                },
            );
            let data = rebuilt[num as usize].clone();
            async move {
                let len = data.len() as u64;
                let work = async {
                    let mut c = piece::connect(&node.address, &node.id).await?;
                    piece::upload(&mut c, &limit, data, &self.identity, &node.key).await
                };
                match tokio::time::timeout(t, work).await {
                    Ok(Ok(_receipt)) => {
                        self.stats.lock().unwrap().bytes_uploaded += len;
                        Ok((num, node.id))
                    }
                    Ok(Err(e)) => Err(format!("piece {num} to node {}: {e}", node.id)),
                    Err(_) => Err(format!("piece {num} to node {}: timed out", node.id)),
                }
            }
        });
        futures::future::join_all(uploads).await
    }
}

/// Rebuilds every piece of `seg` from `k` good ones, checking that the rebuilt
/// pieces agree with those downloaded (CPU work, off the runtime's threads).
async fn rebuild(seg: &Segment, got: Vec<(usize, Vec<u8>)>) -> Result<Vec<bytes::Bytes>, String> {
    let r = seg.redundancy;
    let (len, size) = (seg.encrypted_size as usize, seg.piece_size as usize);
    tokio::task::spawn_blocking(move || {
        let (k, total) = (r.k as usize, r.total as usize);
        let data = orbit_erasure::decode(&got, k, total, len).map_err(|e| e.to_string())?;
        let pieces = orbit_erasure::encode(data, k, total).map_err(|e| e.to_string())?;
        if pieces.iter().any(|p| p.len() != size) {
            return Err(format!(
                "rebuilt pieces are not {size} bytes: the segment's sizes disagree"
            ));
        }
        let by_number: HashMap<usize, &Vec<u8>> = got.iter().map(|(n, p)| (*n, p)).collect();
        if by_number.iter().any(|(n, p)| pieces[*n][..] != p[..]) {
            return Err("rebuilt pieces differ from those downloaded".into());
        }
        Ok(pieces)
    })
    .await
    .map_err(|e| format!("rebuilding the segment: {e}"))?
}

/// The stream and index of a queue entry, for logs.
pub fn segment_name(stream: &StreamId, index: u32) -> String {
    format!("{}/{index}", orbit_identity::hex_encode(stream))
}
