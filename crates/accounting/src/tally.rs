//! The tally observer.
//!
//! At the start of a pass it reads the committed objects at the pass's revision (which
//! stream is which bucket's, and how many objects each bucket has). Every segment
//! adds its piece size to each node holding a piece and its encrypted size to its
//! bucket, range by range. At the end of a complete pass the tallies are written with
//! the interval since the last one: a node's byte-hours are its bytes over that
//! interval. An incomplete pass writes nothing (a tally of part of the segments would
//! under-count).

use orbit_identity::NodeId;
use orbit_kv::{Kv, Scan};
use orbit_satellite_model::keys::{self, StreamId};
use orbit_satellite_model::metainfo::Object;
use orbit_satellite_model::tally::{BucketTally, LastTally, NodeTally, Tallies};
use orbit_satellite_model::unix_now;
use orbit_segment_loop::{LoopSegment, Observer, Partial, PassEnd, PassStart, RangeInfo};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the observer's last finished pass tallied.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TallyStats {
    /// The pass's revision.
    pub pass: i64,
    /// Nodes tallied.
    pub nodes: u64,
    /// Buckets tallied.
    pub buckets: u64,
    /// Piece bytes over all nodes.
    pub node_bytes: u64,
    /// Encrypted bytes over all buckets.
    pub bucket_bytes: u64,
    /// Seconds since the tally before.
    pub interval_s: u64,
    /// Whether the pass was complete (else nothing was written).
    pub written: bool,
}

/// A bucket, as (project, bucket).
type BucketId = (String, String);

/// Counts of one range, or of the pass.
#[derive(Default)]
struct Counts {
    /// Per node: bytes, pieces.
    nodes: HashMap<NodeId, (u64, u64)>,
    /// Per bucket: bytes, inline bytes, segments.
    buckets: HashMap<BucketId, (u64, u64, u64)>,
}

/// One range's share.
pub struct TallyPartial {
    streams: Arc<HashMap<StreamId, BucketId>>,
    counts: Counts,
}

#[async_trait::async_trait]
impl Partial for TallyPartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        for s in segments {
            let seg = &s.segment;
            for (_, node) in &seg.pieces {
                let n = self.counts.nodes.entry(*node).or_default();
                n.0 += seg.piece_size;
                n.1 += 1;
            }
            // Segments of pending uploads belong to no object yet: not a bucket's.
            if let Some(b) = self.streams.get(&s.stream) {
                let c = self.counts.buckets.entry(b.clone()).or_default();
                c.0 += seg.encrypted_size;
                if seg.inline.is_some() {
                    c.1 += seg.encrypted_size;
                }
                c.2 += 1;
            }
        }
        Ok(())
    }
}

/// A pass in progress: how it started, stream owners, objects per bucket, counts.
type PassState = (
    PassStart,
    Arc<HashMap<StreamId, BucketId>>,
    HashMap<BucketId, u64>,
    Counts,
);

/// The tally observer.
pub struct TallyObserver {
    kv: Arc<dyn Kv>,
    pass: Mutex<Option<PassState>>,
    last: Mutex<Option<TallyStats>>,
}

impl TallyObserver {
    /// An observer writing tallies into `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> TallyObserver {
        TallyObserver {
            kv,
            pass: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The last finished pass's figures.
    pub fn stats(&self) -> Option<TallyStats> {
        self.last.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Observer for TallyObserver {
    type Partial = TallyPartial;

    fn name(&self) -> &'static str {
        "tally"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        let mut streams = HashMap::new();
        let mut objects: HashMap<BucketId, u64> = HashMap::new();
        let now = unix_now();
        let mut scan = Scan::prefix(&*self.kv, keys::OBJECTS, 1000).at(pass.revision);
        while let Some(page) = scan
            .next_page()
            .await
            .map_err(|e| format!("reading objects: {e}"))?
        {
            for kv in page {
                let (p, b, _) = keys::parse_object(&kv.key).map_err(|e| e.to_string())?;
                let obj: Object =
                    orbit_kv::record::decode(&kv.key, &kv.value).map_err(|e| e.to_string())?;
                if obj.expired(now) {
                    continue;
                }
                let id = (p.as_str().to_string(), b.as_str().to_string());
                *objects.entry(id.clone()).or_default() += 1;
                streams.insert(obj.stream, id);
            }
        }
        *self.pass.lock().unwrap() = Some((*pass, Arc::new(streams), objects, Counts::default()));
        Ok(())
    }

    async fn fork(&self, _range: &RangeInfo) -> Result<TallyPartial, String> {
        let p = self.pass.lock().unwrap();
        let (_, streams, _, _) = p.as_ref().ok_or("fork before start")?;
        Ok(TallyPartial {
            streams: streams.clone(),
            counts: Counts::default(),
        })
    }

    async fn join(&self, partial: TallyPartial) -> Result<(), String> {
        let mut p = self.pass.lock().unwrap();
        let (_, _, _, counts) = p.as_mut().ok_or("join before start")?;
        for (n, (bytes, pieces)) in partial.counts.nodes {
            let c = counts.nodes.entry(n).or_default();
            c.0 += bytes;
            c.1 += pieces;
        }
        for (b, (bytes, inline, segs)) in partial.counts.buckets {
            let c = counts.buckets.entry(b).or_default();
            c.0 += bytes;
            c.1 += inline;
            c.2 += segs;
        }
        Ok(())
    }

    async fn finish(&self, end: &PassEnd) -> Result<(), String> {
        let (start, _, objects, counts) = self
            .pass
            .lock()
            .unwrap()
            .take()
            .ok_or("finish before start")?;
        let mut stats = TallyStats {
            pass: start.revision,
            ..TallyStats::default()
        };
        if !end.complete {
            *self.last.lock().unwrap() = Some(stats);
            return Ok(());
        }
        let tallies = Tallies::new(self.kv.clone());
        let at = start.started;
        let last = tallies.last().await.map_err(|e| e.to_string())?;
        let interval_s = last.map_or(0, |l| at.saturating_sub(l.at));
        let nodes: Vec<NodeTally> = counts
            .nodes
            .iter()
            .map(|(node, &(bytes, pieces))| NodeTally {
                node: *node,
                at,
                interval_s,
                bytes,
                pieces,
                byte_hours: bytes as f64 * interval_s as f64 / 3600.0,
            })
            .collect();
        // Every bucket with an object, empty ones too.
        let mut ids: Vec<&BucketId> = objects.keys().collect();
        ids.extend(counts.buckets.keys().filter(|b| !objects.contains_key(*b)));
        let buckets: Vec<BucketTally> = ids
            .into_iter()
            .map(|b| {
                let (bytes, inline_bytes, segments) =
                    counts.buckets.get(b).copied().unwrap_or_default();
                BucketTally {
                    project: b.0.clone(),
                    bucket: b.1.clone(),
                    at,
                    interval_s,
                    bytes,
                    inline_bytes,
                    segments,
                    objects: objects.get(b).copied().unwrap_or(0),
                }
            })
            .collect();
        tallies
            .write(
                &LastTally {
                    at,
                    pass: start.revision,
                },
                &nodes,
                &buckets,
            )
            .await
            .map_err(|e| format!("writing the tally: {e}"))?;
        stats.nodes = nodes.len() as u64;
        stats.buckets = buckets.len() as u64;
        stats.node_bytes = nodes.iter().map(|n| n.bytes).sum();
        stats.bucket_bytes = buckets.iter().map(|b| b.bytes).sum();
        stats.interval_s = interval_s;
        stats.written = true;
        *self.last.lock().unwrap() = Some(stats);
        Ok(())
    }
}
