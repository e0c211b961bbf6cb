//! The garbage-collection observer.
//!
//! At the start of a pass every node that is not disqualified gets an empty filter
//! sized from its piece count as the last complete pass found it (a tenth more, for
//! growth), at the target false-positive rate, with a fresh seed: a piece one filter
//! keeps by chance is caught by a later one. Nodes without a count yet are only
//! counted this pass. Every remote segment's pieces are added to their nodes'
//! filters, range by range (the partial filters share size and seed and are merged by
//! OR at the join). At the end of a complete pass the counts are recorded and each
//! filter is published with its creation time, the newest segment creation the pass
//! saw; a node that outgrew its filter (its false-positive rate would be more than
//! twice the target) gets none this pass and a larger one the next. An incomplete
//! pass publishes nothing.

use orbit_identity::NodeId;
use orbit_kv::Kv;
use orbit_protocol::bloom::Filter;
use orbit_satellite_model::gc::GcState;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_segment_loop::{LoopSegment, Observer, Partial, PassEnd, PassStart, RangeInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The `[gc]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// Target false-positive rate of the filters (Storj: 10%).
    pub false_positive: f64,
    /// Seconds between the sender's rounds.
    pub interval_s: u64,
    /// Filters sent at once.
    pub concurrency: usize,
    /// A node that has not stored its filter within this is tried next round, seconds.
    pub timeout_s: u64,
    /// TTL of the sender's election lease, seconds.
    pub leader_ttl_s: i64,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            false_positive: 0.1,
            interval_s: 300,
            concurrency: 4,
            timeout_s: 120,
            leader_ttl_s: 10,
        }
    }
}

/// What the observer's last finished pass built.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcStats {
    /// The pass's revision.
    pub pass: i64,
    /// Pieces seen.
    pub pieces: u64,
    /// Filters published.
    pub filters: u64,
    /// Bytes of the filters published.
    pub bytes: u64,
    /// Nodes only counted (no count yet, or outgrew their filter).
    pub counted_only: u64,
    /// The filters' creation time.
    pub created: u64,
    /// Whether the pass was complete (else nothing was published).
    pub published: bool,
}

/// One pass's filters and counts.
#[derive(Default)]
struct Build {
    /// Every node that is not disqualified (each gets a count, zero included).
    nodes: Vec<NodeId>,
    filters: HashMap<NodeId, Filter>,
    counts: HashMap<NodeId, u64>,
    newest: u64,
}

/// A pass in progress: how it started, each node's empty filter, what was built.
type PassState = (PassStart, Arc<HashMap<NodeId, Filter>>, Build);

/// One range's share.
pub struct GcPartial {
    /// Empty filters to copy from, by node.
    empty: Arc<HashMap<NodeId, Filter>>,
    build: Build,
}

#[async_trait::async_trait]
impl Partial for GcPartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        for s in segments.iter().filter(|s| s.segment.inline.is_none()) {
            let seg = &s.segment;
            self.build.newest = self.build.newest.max(seg.created);
            for &(num, node) in &seg.pieces {
                *self.build.counts.entry(node).or_default() += 1;
                let Some(empty) = self.empty.get(&node) else {
                    continue;
                };
                self.build
                    .filters
                    .entry(node)
                    .or_insert_with(|| empty.clone())
                    .add(&seg.root.derive(&node, num));
            }
        }
        Ok(())
    }
}

/// The garbage-collection observer.
pub struct GcObserver {
    kv: Arc<dyn Kv>,
    section: GcSection,
    pass: Mutex<Option<PassState>>,
    last: Mutex<Option<GcStats>>,
}

impl GcObserver {
    /// An observer publishing filters into `kv`.
    pub fn new(kv: Arc<dyn Kv>, section: GcSection) -> GcObserver {
        GcObserver {
            kv,
            section,
            pass: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The last finished pass's figures.
    pub fn stats(&self) -> Option<GcStats> {
        self.last.lock().unwrap().clone()
    }
}

/// The false-positive rate a filter of `bits` bits and `k` hashes has over `n` pieces.
fn expected_fp(bits: u64, k: u8, n: u64) -> f64 {
    let k = f64::from(k);
    (1.0 - (-k * n as f64 / bits as f64).exp()).powf(k)
}

#[async_trait::async_trait]
impl Observer for GcObserver {
    type Partial = GcPartial;

    fn name(&self) -> &'static str {
        "gc-filters"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        let nodes = Nodes::new(self.kv.clone(), SelectionConfig::default())
            .all()
            .await
            .map_err(|e| format!("reading the node table: {e}"))?;
        let counts = GcState::new(self.kv.clone())
            .counts()
            .await
            .map_err(|e| format!("reading the piece counts: {e}"))?;
        let empty: HashMap<NodeId, Filter> = nodes
            .iter()
            .filter(|n| !n.disqualified)
            .filter_map(|n| {
                let c = *counts.get(&n.id)?;
                Some((
                    n.id,
                    Filter::new(c + c / 10 + 64, self.section.false_positive),
                ))
            })
            .collect();
        let build = Build {
            nodes: nodes
                .iter()
                .filter(|n| !n.disqualified)
                .map(|n| n.id)
                .collect(),
            ..Build::default()
        };
        *self.pass.lock().unwrap() = Some((*pass, Arc::new(empty), build));
        Ok(())
    }

    async fn fork(&self, _range: &RangeInfo) -> Result<GcPartial, String> {
        let p = self.pass.lock().unwrap();
        let (_, empty, _) = p.as_ref().ok_or("fork before start")?;
        Ok(GcPartial {
            empty: empty.clone(),
            build: Build::default(),
        })
    }

    async fn join(&self, partial: GcPartial) -> Result<(), String> {
        let mut p = self.pass.lock().unwrap();
        let (_, _, build) = p.as_mut().ok_or("join before start")?;
        build.newest = build.newest.max(partial.build.newest);
        for (node, n) in partial.build.counts {
            *build.counts.entry(node).or_default() += n;
        }
        for (node, f) in partial.build.filters {
            match build.filters.get_mut(&node) {
                Some(into) => into.union(&f).map_err(|e| e.to_string())?,
                None => {
                    build.filters.insert(node, f);
                }
            }
        }
        Ok(())
    }

    async fn finish(&self, end: &PassEnd) -> Result<(), String> {
        let (start, empty, mut build) = self
            .pass
            .lock()
            .unwrap()
            .take()
            .ok_or("finish before start")?;
        let mut stats = GcStats {
            pass: start.revision,
            pieces: build.counts.values().sum(),
            ..GcStats::default()
        };
        if !end.complete {
            *self.last.lock().unwrap() = Some(stats);
            return Ok(());
        }
        // A pass saw nothing dated: its own start is the newest it could have seen.
        let created = if build.newest == 0 {
            start.started
        } else {
            build.newest
        };
        stats.created = created;
        let state = GcState::new(self.kv.clone());
        let fp = self.section.false_positive;
        for (node, blank) in empty.iter() {
            let n = build.counts.get(node).copied().unwrap_or(0);
            // A node with no piece in the pass gets its empty filter: all it holds
            // from before is garbage.
            let f = build.filters.remove(node).unwrap_or_else(|| blank.clone());
            if expected_fp(f.bit_len(), f.hashes(), n) > 2.0 * fp {
                tracing::warn!(node = %node, pieces = n, "node outgrew its filter; a larger one next pass");
                stats.counted_only += 1;
                continue;
            }
            let bytes = f.encode();
            state
                .publish(node, start.revision, created, n, &bytes)
                .await
                .map_err(|e| format!("publishing the filter of {node}: {e}"))?;
            stats.filters += 1;
            stats.bytes += bytes.len() as u64;
        }
        stats.counted_only += build
            .nodes
            .iter()
            .filter(|n| !empty.contains_key(n))
            .count() as u64;
        // Disqualified nodes get no filter and need no count.
        let counts: HashMap<NodeId, u64> = build
            .nodes
            .iter()
            .map(|n| (*n, build.counts.get(n).copied().unwrap_or(0)))
            .collect();
        state
            .set_counts(&counts, start.revision)
            .await
            .map_err(|e| format!("recording piece counts: {e}"))?;
        stats.published = true;
        let m = &*crate::metrics::METRICS;
        m.published.inc_by(stats.filters);
        m.published_bytes.inc_by(stats.bytes);
        *self.last.lock().unwrap() = Some(stats);
        Ok(())
    }
}
