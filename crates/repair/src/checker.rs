//! The part of repair that decides what to repair: the checker, a segment-loop observer
//! that classifies every remote segment's pieces against the node table (healthy,
//! missing, clumped; see [`orbit_satellite_model::repair`]) and keeps the repair queue
//! in the store: injured segments are queued or updated with their health, and after
//! a complete pass the entries it did not flag again are removed.

use futures::stream::{self, TryStreamExt};
use orbit_kv::Kv;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::repair::{HealthRules, HealthTable, Injured, RepairQueue};
use orbit_satellite_model::unix_now;
use orbit_segment_loop::{LoopSegment, Observer, Partial, PassEnd, PassStart, RangeInfo};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// What the checker found in its last finished pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckerStats {
    /// The pass's revision.
    pub pass: i64,
    /// Remote segments checked (inline segments have no pieces to lose).
    pub checked: u64,
    /// Injured segments queued or updated.
    pub injured: u64,
    /// Of those, segments with fewer than k retrievable pieces.
    pub lost: u64,
    /// Queue entries removed because the pass found them healthy or gone.
    pub removed: u64,
}

/// The repair checker.
pub struct Checker {
    kv: Arc<dyn Kv>,
    queue: RepairQueue,
    rules: HealthRules,
    pass: Mutex<Option<PassState>>,
    last: Mutex<Option<CheckerStats>>,
}

/// One pass's state: the node table as read at its start, and the counts so far.
struct PassState {
    table: Arc<HealthTable>,
    now: u64,
    stats: CheckerStats,
}

/// One range's share.
pub struct CheckerPartial {
    table: Arc<HealthTable>,
    checked: u64,
    lost: u64,
    injured: Vec<Injured>,
}

/// Queue writes in flight at once while joining a range.
const WRITES: usize = 16;

impl Checker {
    /// A checker over `kv` judging pieces by `rules`.
    pub fn new(kv: Arc<dyn Kv>, rules: HealthRules) -> Checker {
        Checker {
            queue: RepairQueue::new(kv.clone()),
            kv,
            rules,
            pass: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The last finished pass's counts.
    pub fn stats(&self) -> Option<CheckerStats> {
        self.last.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Partial for CheckerPartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        for s in segments.iter().filter(|s| s.segment.inline.is_none()) {
            self.checked += 1;
            let h = self.table.health(&s.segment);
            if h.injured(&s.segment) {
                self.lost += h.lost(&s.segment) as u64;
                self.injured.push(Injured {
                    stream: s.stream,
                    index: s.segment.index,
                    k: s.segment.redundancy.k,
                    health: h,
                });
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Observer for Checker {
    type Partial = CheckerPartial;

    fn name(&self) -> &'static str {
        "repair-checker"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        // The node table as of the pass: one read, shared by every range.
        let nodes = Nodes::new(self.kv.clone(), SelectionConfig::default())
            .all()
            .await
            .map_err(|e| format!("reading the node table: {e}"))?;
        let now = unix_now();
        *self.pass.lock().unwrap() = Some(PassState {
            table: Arc::new(HealthTable::new(&nodes, now, &self.rules)),
            now,
            stats: CheckerStats {
                pass: pass.revision,
                ..CheckerStats::default()
            },
        });
        Ok(())
    }

    async fn fork(&self, _range: &RangeInfo) -> Result<CheckerPartial, String> {
        let p = self.pass.lock().unwrap();
        let p = p.as_ref().ok_or("fork before start")?;
        Ok(CheckerPartial {
            table: p.table.clone(),
            checked: 0,
            lost: 0,
            injured: Vec::new(),
        })
    }

    async fn join(&self, partial: CheckerPartial) -> Result<(), String> {
        let (pass, now) = {
            let p = self.pass.lock().unwrap();
            let p = p.as_ref().ok_or("join before start")?;
            (p.stats.pass, p.now)
        };
        stream::iter(partial.injured.iter().map(Ok))
            .try_for_each_concurrent(WRITES, |i| async move {
                self.queue
                    .flag(i, pass, now)
                    .await
                    .map_err(|e| format!("queueing a segment for repair: {e}"))
            })
            .await?;
        let mut p = self.pass.lock().unwrap();
        let s = &mut p.as_mut().ok_or("join before start")?.stats;
        s.checked += partial.checked;
        s.injured += partial.injured.len() as u64;
        s.lost += partial.lost;
        Ok(())
    }

    async fn finish(&self, end: &PassEnd) -> Result<(), String> {
        let mut stats = self
            .pass
            .lock()
            .unwrap()
            .take()
            .ok_or("finish before start")?
            .stats;
        // Absence counts only when every segment was seen.
        if end.complete {
            stats.removed =
                self.queue
                    .remove_stale(stats.pass)
                    .await
                    .map_err(|e| format!("removing repaired entries: {e}"))? as u64;
        }
        let m = &*crate::metrics::METRICS;
        m.checked.inc_by(stats.checked);
        m.lost.set(stats.lost as i64);
        if end.complete {
            m.queue.set(stats.injured as i64);
        }
        if stats.lost > 0 {
            tracing::error!(
                lost = stats.lost,
                "segments with fewer than k retrievable pieces"
            );
        }
        *self.last.lock().unwrap() = Some(stats);
        Ok(())
    }
}
