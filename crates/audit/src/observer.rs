//! The audit observer: per pass, a weighted reservoir sample of `slots` segments per
//! node (weighted by segment size, so a node is audited on the bytes it holds), built
//! per range and merged at the join; at the end of a complete pass the sampled
//! segments replace the verification queue. An incomplete pass writes nothing.
//!
//! The sampling is Efraimidis–Spirakis A-Res: every (node, segment) gets the key
//! `ln(u) / w` for a uniform `u` and the segment's size `w`, and each node keeps the
//! `slots` largest keys. Keys from different ranges compare directly, so merging
//! partial reservoirs keeps the largest keys of their union: the merged sample is the
//! one a single scan would have drawn.

use orbit_identity::NodeId;
use orbit_kv::Kv;
use orbit_satellite_model::audit::AuditQueue;
use orbit_satellite_model::keys::StreamId;
use orbit_satellite_model::unix_now;
use orbit_segment_loop::{LoopSegment, Observer, Partial, PassEnd, PassStart, RangeInfo};
use rand::Rng;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What the observer's last finished pass sampled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SampleStats {
    /// The pass's revision.
    pub pass: i64,
    /// Nodes with at least one sampled segment.
    pub nodes: u64,
    /// Segments queued (a segment sampled for several nodes is one job).
    pub queued: u64,
    /// Older entries dropped from the queue.
    pub dropped: u64,
    /// Whether the pass was complete (else nothing was written).
    pub written: bool,
}

/// One node's reservoir: up to `slots` (key, segment) pairs, the largest keys seen.
#[derive(Default)]
struct Reservoir {
    items: Vec<(f64, StreamId, u32)>,
}

impl Reservoir {
    fn offer(&mut self, slots: usize, key: f64, stream: StreamId, index: u32) {
        if self.items.len() < slots {
            self.items.push((key, stream, index));
            return;
        }
        let (min_at, min) = self
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| (i, it.0))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if key > min {
            self.items[min_at] = (key, stream, index);
        }
    }
}

/// One range's reservoirs.
pub struct SamplePartial {
    slots: usize,
    reservoirs: HashMap<NodeId, Reservoir>,
}

#[async_trait::async_trait]
impl Partial for SamplePartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        let mut rng = rand::thread_rng();
        for s in segments.iter().filter(|s| s.segment.inline.is_none()) {
            let w = s.segment.encrypted_size.max(1) as f64;
            for (_, node) in &s.segment.pieces {
                // ln(u) / w for u in (0, 1]: larger for larger segments, on average.
                let u: f64 = 1.0 - rng.gen::<f64>();
                let key = u.ln() / w;
                self.reservoirs.entry(*node).or_default().offer(
                    self.slots,
                    key,
                    s.stream,
                    s.segment.index,
                );
            }
        }
        Ok(())
    }
}

/// The audit observer.
pub struct AuditObserver {
    kv: Arc<dyn Kv>,
    slots: usize,
    merged: Mutex<Option<(i64, HashMap<NodeId, Reservoir>)>>,
    last: Mutex<Option<SampleStats>>,
}

impl AuditObserver {
    /// An observer sampling `slots` segments per node into the queue in `kv`.
    pub fn new(kv: Arc<dyn Kv>, slots: usize) -> AuditObserver {
        AuditObserver {
            kv,
            slots: slots.max(1),
            merged: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The last finished pass's sample.
    pub fn stats(&self) -> Option<SampleStats> {
        self.last.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Observer for AuditObserver {
    type Partial = SamplePartial;

    fn name(&self) -> &'static str {
        "audit-sampler"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        *self.merged.lock().unwrap() = Some((pass.revision, HashMap::new()));
        Ok(())
    }

    async fn fork(&self, _range: &RangeInfo) -> Result<SamplePartial, String> {
        Ok(SamplePartial {
            slots: self.slots,
            reservoirs: HashMap::new(),
        })
    }

    async fn join(&self, partial: SamplePartial) -> Result<(), String> {
        let mut m = self.merged.lock().unwrap();
        let (_, merged) = m.as_mut().ok_or("join before start")?;
        for (node, r) in partial.reservoirs {
            let into = merged.entry(node).or_default();
            for (key, stream, index) in r.items {
                into.offer(self.slots, key, stream, index);
            }
        }
        Ok(())
    }

    async fn finish(&self, end: &PassEnd) -> Result<(), String> {
        let (pass, merged) = self
            .merged
            .lock()
            .unwrap()
            .take()
            .ok_or("finish before start")?;
        let mut stats = SampleStats {
            pass,
            nodes: merged.len() as u64,
            ..SampleStats::default()
        };
        // Absence matters here too: a sample from part of the segments would starve
        // the nodes of the rest.
        if end.complete {
            let jobs: HashSet<(StreamId, u32)> = merged
                .values()
                .flat_map(|r| r.items.iter().map(|(_, s, i)| (*s, *i)))
                .collect();
            let mut jobs: Vec<_> = jobs.into_iter().collect();
            jobs.sort();
            stats.queued = jobs.len() as u64;
            stats.dropped = AuditQueue::new(self.kv.clone())
                .replace(&jobs, pass, unix_now())
                .await
                .map_err(|e| format!("queueing the audit sample: {e}"))?
                as u64;
            stats.written = true;
        }
        *self.last.lock().unwrap() = Some(stats);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoirs_keep_the_largest_keys_and_favour_large_segments() {
        let mut r = Reservoir::default();
        for (i, k) in [-5.0, -1.0, -3.0, -0.5, -9.0].into_iter().enumerate() {
            r.offer(2, k, [i as u8; 16], 0);
        }
        let mut keys: Vec<f64> = r.items.iter().map(|i| i.0).collect();
        keys.sort_by(f64::total_cmp);
        assert_eq!(keys, vec![-1.0, -0.5]);
        // A segment ten times larger is picked about ten times as often.
        let mut rng = rand::thread_rng();
        let (mut big, trials) = (0, 20_000);
        for _ in 0..trials {
            let mut r = Reservoir::default();
            for (w, id) in [(10.0, 1u8), (1.0, 2u8)] {
                let u: f64 = 1.0 - rng.gen::<f64>();
                r.offer(1, u.ln() / w, [id; 16], 0);
            }
            big += usize::from(r.items[0].1 == [1u8; 16]);
        }
        let share = big as f64 / trials as f64;
        assert!((0.88..0.94).contains(&share), "{share}");
    }
}
