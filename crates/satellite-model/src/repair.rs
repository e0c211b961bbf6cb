//! Segment health, and the repair queue the checker fills and repairers drain.
//!
//! A piece is *missing* when its node is unknown, disqualified or offline (not heard
//! from within the online window); *clumped* when another piece of the segment is on
//! a node in the same /24 (only the first piece of each network counts as healthy);
//! *suspended* (retrievable, not healthy) when its node is suspended; else *healthy*. A segment is injured when its healthy pieces are at or below its
//! repair threshold and below its success threshold, or when it has clumped pieces to
//! move; it is lost when fewer than `k` pieces are retrievable at all.
//!
//! The queue keeps one entry per injured segment under
//! `/orbit/sat/repair/segments/<stream>/<index>` and a pointer to it under
//! `/orbit/sat/repair/queue/<healthy>/<stream>/<index>`, so a range over the queue
//! lists the least healthy segments first. Both change in one transaction.

use crate::keys::{self, StreamId};
use crate::metainfo::Segment;
use crate::nodes::{network_of, NodeRecord};
use crate::{decode, Error};
use orbit_identity::NodeId;
use orbit_kv::record::encode;
use orbit_kv::{DeleteRequest, Kv, PutRequest, RangeRequest, Scan, TxnOp, TxnRequest};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What one piece of a segment is worth now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PieceState {
    /// On an online, qualified node, alone in its network.
    Healthy,
    /// On a node that is unknown, disqualified or offline.
    Missing,
    /// Retrievable, but in a /24 another piece of the segment is in.
    Clumped,
    /// Retrievable, but on a suspended node: not counted healthy.
    Suspended,
}

/// A segment's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Healthy pieces.
    pub healthy: u32,
    /// Pieces that can still be downloaded (healthy and clumped).
    pub retrievable: u32,
    /// Each piece: its number, node and state.
    pub pieces: Vec<(u16, NodeId, PieceState)>,
}

impl Health {
    /// Pieces in `state`.
    pub fn count(&self, state: PieceState) -> u32 {
        self.pieces.iter().filter(|p| p.2 == state).count() as u32
    }

    /// Whether `segment` needs repair at this health.
    pub fn injured(&self, segment: &Segment) -> bool {
        let r = &segment.redundancy;
        (self.healthy <= r.repair && self.healthy < r.success)
            || self.count(PieceState::Clumped) > 0
    }

    /// Whether too few pieces are left to rebuild `segment`.
    pub fn lost(&self, segment: &Segment) -> bool {
        self.retrievable < segment.redundancy.k
    }
}

/// What decides a piece's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthRules {
    /// A node is online when heard from within this many seconds.
    pub online_window_s: u64,
    /// Pieces sharing a /24 are clumped (off when every node is on one host, as in a
    /// local test network).
    pub distinct_networks: bool,
}

/// Whether `node` counts as online and qualified at `now`.
pub fn usable(node: &NodeRecord, now: u64, rules: &HealthRules) -> bool {
    !node.disqualified && node.online(now, rules.online_window_s)
}

/// The node table as health sees it at one moment: for every usable node, the
/// network it is in (interned), so judging a segment formats and parses nothing.
#[derive(Clone, Debug, Default)]
pub struct HealthTable {
    /// Each usable node's network, and whether it is suspended.
    networks: HashMap<NodeId, (u32, bool)>,
    distinct_networks: bool,
}

impl HealthTable {
    /// The table of `nodes` at `now` under `rules`.
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = &'a NodeRecord>,
        now: u64,
        rules: &HealthRules,
    ) -> HealthTable {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let networks = nodes
            .into_iter()
            .filter(|n| usable(n, now, rules))
            .map(|n| {
                let next = ids.len() as u32;
                let net = *ids.entry(network_of(&n.address)).or_insert(next);
                (n.id, (net, n.reputation.suspended()))
            })
            .collect();
        HealthTable {
            networks,
            distinct_networks: rules.distinct_networks,
        }
    }

    /// The health of `segment`.
    pub fn health(&self, segment: &Segment) -> Health {
        let mut seen = HashSet::with_capacity(segment.pieces.len());
        let (mut healthy, mut retrievable) = (0, 0);
        let pieces = segment
            .pieces
            .iter()
            .map(|&(num, node)| {
                let state = match self.networks.get(&node) {
                    Some((_, true)) => {
                        retrievable += 1;
                        PieceState::Suspended
                    }
                    Some((net, false)) => {
                        retrievable += 1;
                        if !self.distinct_networks || seen.insert(*net) {
                            healthy += 1;
                            PieceState::Healthy
                        } else {
                            PieceState::Clumped
                        }
                    }
                    None => PieceState::Missing,
                };
                (num, node, state)
            })
            .collect();
        Health {
            healthy,
            retrievable,
            pieces,
        }
    }
}

/// The health of `segment` given the node table `nodes` at `now` (for one segment;
/// judging many, build a [`HealthTable`] once).
pub fn health(
    segment: &Segment,
    nodes: &HashMap<NodeId, NodeRecord>,
    now: u64,
    rules: &HealthRules,
) -> Health {
    HealthTable::new(
        segment.pieces.iter().filter_map(|(_, id)| nodes.get(id)),
        now,
        rules,
    )
    .health(segment)
}

/// A queued segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairEntry {
    /// The segment's stream.
    pub stream: StreamId,
    /// The segment's index in it.
    pub index: u32,
    /// Healthy pieces when last checked.
    pub healthy: u32,
    /// Retrievable pieces when last checked.
    pub retrievable: u32,
    /// Pieces needed to rebuild it.
    pub k: u32,
    /// Unix time (s) first queued.
    pub inserted: u64,
    /// Unix time (s) last flagged.
    pub updated: u64,
    /// Repairs tried and failed.
    pub attempts: u32,
    /// Unix time (s) of the last try (0: none).
    pub last_attempt: u64,
    /// Store revision of the loop pass that last flagged it (passes pin a fresh
    /// revision each, so it names the pass).
    pub pass: i64,
}

crate::versioned_v1!(RepairEntry, "repair queue entry");

impl RepairEntry {
    /// Whether too few pieces are left to rebuild it.
    pub fn lost(&self) -> bool {
        self.retrievable < self.k
    }
}

fn entry_key(stream: &StreamId, index: u32) -> String {
    keys::repair_entry(stream, index)
}

fn queue_key(e: &RepairEntry) -> String {
    keys::repair_pointer(e.healthy, &e.stream, e.index)
}

/// What the checker found wrong with one segment.
#[derive(Clone, Debug)]
pub struct Injured {
    /// Its stream.
    pub stream: StreamId,
    /// Its index.
    pub index: u32,
    /// Its health.
    pub health: Health,
    /// Pieces needed to rebuild it.
    pub k: u32,
}

/// Counts of one pass's queue upkeep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Entries written (new or updated).
    pub flagged: usize,
    /// Entries removed because a complete pass no longer flagged them.
    pub removed: usize,
}

/// The repair queue.
#[derive(Clone)]
pub struct RepairQueue {
    kv: Arc<dyn Kv>,
}

impl RepairQueue {
    /// The queue in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> RepairQueue {
        RepairQueue { kv }
    }

    /// Queues or updates `injured` as flagged by the pass at revision `pass`, at `now`.
    /// An entry keeps its insertion time and attempts; its health and pointer follow.
    pub async fn flag(&self, injured: &Injured, pass: i64, now: u64) -> Result<(), Error> {
        let key = entry_key(&injured.stream, injured.index);
        for _ in 0..16 {
            let cur = self.kv.range(RangeRequest::key(key.clone())).await?;
            let (rev, old) = match cur.kvs.first() {
                Some(kv) => (
                    kv.mod_revision,
                    Some(decode::<RepairEntry>(&kv.key, &kv.value)?),
                ),
                None => (0, None),
            };
            let entry = RepairEntry {
                stream: injured.stream,
                index: injured.index,
                healthy: injured.health.healthy,
                retrievable: injured.health.retrievable,
                k: injured.k,
                inserted: old.as_ref().map_or(now, |o| o.inserted),
                updated: now,
                attempts: old.as_ref().map_or(0, |o| o.attempts),
                last_attempt: old.as_ref().map_or(0, |o| o.last_attempt),
                pass,
            };
            let mut ops = Vec::new();
            // The pointer moves when the health changed (one txn may not name a key twice).
            if let Some(o) = old.as_ref().filter(|o| queue_key(o) != queue_key(&entry)) {
                ops.push(TxnOp::Delete(DeleteRequest::key(queue_key(o))));
            }
            ops.push(TxnOp::Put(PutRequest::new(key.clone(), encode(&entry))));
            ops.push(TxnOp::Put(PutRequest::new(queue_key(&entry), "")));
            let t = self
                .kv
                .txn(TxnRequest::if_unchanged(key.clone(), rev, ops))
                .await?;
            if t.succeeded {
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "repair entry {key}: it keeps changing; try again"
        )))
    }

    /// Removes the entries the complete pass at revision `pass` did not flag: their
    /// segments are healthy again, or gone.
    pub async fn remove_stale(&self, pass: i64) -> Result<usize, Error> {
        let mut removed = 0;
        let mut scan = Scan::prefix(&*self.kv, keys::REPAIR_ENTRIES, 500);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let e: RepairEntry = decode(&kv.key, &kv.value)?;
                if e.pass >= pass {
                    continue;
                }
                // Unless flagged again meanwhile.
                let t = self
                    .kv
                    .txn(TxnRequest::if_unchanged(
                        kv.key.clone(),
                        kv.mod_revision,
                        vec![
                            TxnOp::Delete(DeleteRequest::key(kv.key.clone())),
                            TxnOp::Delete(DeleteRequest::key(queue_key(&e))),
                        ],
                    ))
                    .await?;
                removed += t.succeeded as usize;
            }
        }
        Ok(removed)
    }

    /// Every entry, least healthy first.
    pub async fn entries(&self) -> Result<Vec<RepairEntry>, Error> {
        let mut out = Vec::new();
        let mut scan = Scan::prefix(&*self.kv, keys::REPAIR_QUEUE, 500);
        while let Some(page) = scan.next_page().await? {
            let entries = page
                .iter()
                .map(|kv| keys::parse_repair_pointer(&kv.key).map(|(s, i)| entry_key(&s, i)))
                .collect::<Result<Vec<_>, _>>()?;
            out.extend(crate::read_many::<RepairEntry>(&*self.kv, entries).await?);
        }
        Ok(out)
    }

    /// Claims the least healthy entry that `eligible` accepts (its back-off over) and no
    /// one holds, for `holder` under `lease`: the claim key lives as long as the lease,
    /// so a worker that dies frees its jobs when its lease runs out. `None`: nothing to
    /// do now.
    pub async fn claim(
        &self,
        holder: &str,
        lease: i64,
        eligible: &(dyn Fn(&RepairEntry) -> bool + Sync),
    ) -> Result<Option<RepairEntry>, Error> {
        let mut scan = Scan::prefix(&*self.kv, keys::REPAIR_QUEUE, 64);
        while let Some(page) = scan.next_page().await? {
            let entries = page
                .iter()
                .map(|kv| keys::parse_repair_pointer(&kv.key).map(|(s, i)| entry_key(&s, i)))
                .collect::<Result<Vec<_>, _>>()?;
            for (e, rev) in crate::read_many_at::<RepairEntry>(&*self.kv, entries).await? {
                if !eligible(&e) {
                    continue;
                }
                let claim = keys::repair_claim(&e.stream, e.index);
                let guard = Some((entry_key(&e.stream, e.index), rev));
                if crate::claims::take(&*self.kv, claim, holder, lease, guard).await? {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Gives a claim up (the job is done, dropped or failed).
    pub async fn release(&self, stream: &StreamId, index: u32) -> Result<(), Error> {
        crate::claims::release(&*self.kv, keys::repair_claim(stream, index)).await
    }

    /// Whether someone holds the segment's claim, and who.
    pub async fn holder(&self, stream: &StreamId, index: u32) -> Result<Option<String>, Error> {
        crate::claims::holder(&*self.kv, keys::repair_claim(stream, index)).await
    }

    /// Counts a failed repair of a queued segment at `now` (its back-off grows with
    /// the attempts). An entry gone meanwhile stays gone.
    pub async fn attempted(&self, stream: &StreamId, index: u32, now: u64) -> Result<(), Error> {
        let key = entry_key(stream, index);
        for _ in 0..16 {
            let cur = self.kv.range(RangeRequest::key(key.clone())).await?;
            let Some(kv) = cur.kvs.first() else {
                return Ok(());
            };
            let mut e: RepairEntry = decode(&kv.key, &kv.value)?;
            e.attempts = e.attempts.saturating_add(1);
            e.last_attempt = now;
            let txn = TxnRequest::if_unchanged(
                key.clone(),
                kv.mod_revision,
                vec![TxnOp::Put(PutRequest::new(key.clone(), encode(&e)))],
            );
            if self.kv.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "repair entry {key}: it keeps changing; try again"
        )))
    }

    /// Removes a segment's entry and pointer: it was repaired, or needs no repair.
    pub async fn remove(&self, stream: &StreamId, index: u32) -> Result<(), Error> {
        let key = entry_key(stream, index);
        for _ in 0..16 {
            let cur = self.kv.range(RangeRequest::key(key.clone())).await?;
            let Some(kv) = cur.kvs.first() else {
                return Ok(());
            };
            let e: RepairEntry = decode(&kv.key, &kv.value)?;
            let txn = TxnRequest::if_unchanged(
                key.clone(),
                kv.mod_revision,
                vec![
                    TxnOp::Delete(DeleteRequest::key(key.clone())),
                    TxnOp::Delete(DeleteRequest::key(queue_key(&e))),
                ],
            );
            if self.kv.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "repair entry {key}: it keeps changing; try again"
        )))
    }

    /// The entry of one segment, if queued.
    pub async fn get(&self, stream: &StreamId, index: u32) -> Result<Option<RepairEntry>, Error> {
        let r = self
            .kv
            .range(RangeRequest::key(entry_key(stream, index)))
            .await?;
        r.kvs
            .first()
            .map(|kv| decode(&kv.key, &kv.value))
            .transpose()
    }
}
