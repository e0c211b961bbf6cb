//! The segment loop: one pass reads every segment of the satellite once, at one store
//! revision, and feeds it to observers (the repair checker, audit sampling, garbage
//! collection filters, tallies), so each of them costs one scan rather than one each.
//!
//! A pass:
//! 1. pins the current revision under a lease, so automatic compaction leaves it
//!    readable for the whole pass (and a dead loop's pin goes with its lease);
//! 2. calls every observer's `start`;
//! 3. counts the segments at the pinned revision (the live count);
//! 4. splits the segment keys into `ranges` ranges by stream id and scans them in
//!    parallel in pages, each range giving every observer a partial (`fork`) that
//!    `process`es the range's segments batch by batch; a transient store error
//!    retries the page from the range's cursor until `retry_s` runs out. A range is
//!    read as consecutive chunks of the stream-id space sized from the live count
//!    (about [`CHUNK_PAGES`] pages each): every limited `Range` also counts the rest of
//!    its interval (etcd answers a count), so one interval read in pages would cost
//!    quadratic time in its size;
//! 5. `join`s each observer's partials, range by range; a pass is complete only when
//!    it processed exactly the live count, every record decoded, no range failed and
//!    the loop stayed the elected one throughout;
//! 6. calls `finish` with that verdict, and unpins.
//!
//! An observer's error (in any step) skips only that observer's remaining calls and
//! its `finish`; the other observers and the pass go on.

mod metrics;
mod observer;

pub use observer::{Observer, Partial};

use observer::{DynObserver, DynPartial};
use orbit_kv::{pin_revision, Kv, KvError, RangeRequest, Scan};
use orbit_satellite_model::keys::{self, StreamId};
use orbit_satellite_model::metainfo::{decode_segment, Segment};
use orbit_satellite_model::unix_now;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `[loop]` section: how often and how widely the loop runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopSection {
    /// Seconds between the starts of passes.
    pub interval_s: u64,
    /// Ranges scanned in parallel.
    pub ranges: usize,
    /// Segments per page and per batch handed to observers.
    pub batch: usize,
    /// TTL of the leader lease, seconds: a standby takes over within about this long
    /// after the active loop dies.
    pub leader_ttl_s: i64,
    /// How long a range retries a failing store read before the pass gives it up.
    pub retry_s: u64,
}

impl Default for LoopSection {
    fn default() -> Self {
        LoopSection {
            interval_s: 3600,
            ranges: 2,
            batch: 2500,
            leader_ttl_s: 10,
            retry_s: 60,
        }
    }
}

/// One segment as observers see it.
#[derive(Clone, Debug)]
pub struct LoopSegment {
    /// Its stream (the object's segments share it).
    pub stream: StreamId,
    /// The record.
    pub segment: Segment,
    /// Store revision that created the segment's key.
    pub create_revision: i64,
    /// Store revision that last wrote it: what a compare-and-swap on it names.
    pub mod_revision: i64,
}

/// What observers are told when a pass starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassStart {
    /// The revision every range reads at.
    pub revision: i64,
    /// Unix time (s) the pass started.
    pub started: u64,
}

/// The range a partial covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeInfo {
    /// Its index.
    pub index: usize,
    /// How many ranges the pass has.
    pub of: usize,
}

/// What observers are told when a pass ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassEnd {
    /// The revision the pass read at.
    pub revision: i64,
    /// Unix time (s) the pass started.
    pub started: u64,
    /// Segments processed.
    pub segments: u64,
    /// Whether every segment was seen once: act on absence (garbage collection,
    /// dropping queue entries not flagged again) only when this is true.
    pub complete: bool,
}

/// How one observer fared in a pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverReport {
    /// Its name.
    pub name: String,
    /// Time spent in its calls, summed over ranges, ms.
    pub duration_ms: u64,
    /// Its first error, if any (its finish was then skipped).
    pub error: Option<String>,
}

/// What a pass did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    /// Unix time (s) it started.
    pub started: u64,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// The revision it read at (0 if it never pinned one).
    pub revision: i64,
    /// Ranges scanned.
    pub ranges: usize,
    /// Chunks each range was read in.
    #[serde(default)]
    pub chunks: usize,
    /// Segments processed.
    pub segments: u64,
    /// Segments in the store at the revision.
    pub live_count: u64,
    /// Segment records that did not decode (each is an error naming its key in the log).
    pub unreadable: u64,
    /// Whether every segment was processed once.
    pub complete: bool,
    /// Why it is not complete.
    pub incomplete: Option<String>,
    /// Each observer.
    pub observers: Vec<ObserverReport>,
}

impl PassReport {
    /// A one-line summary, the error a worker reports for a pass with problems.
    pub fn problems(&self) -> Option<String> {
        let mut p: Vec<String> = self.incomplete.iter().cloned().collect();
        p.extend(
            self.observers
                .iter()
                .filter_map(|o| Some(format!("observer {}: {}", o.name, o.error.as_ref()?))),
        );
        (!p.is_empty()).then(|| p.join("; "))
    }
}

/// Whether the loop may go on: false once this process is no longer the elected loop.
pub type Active = Arc<dyn Fn() -> bool + Send + Sync>;

/// The pin's name and lease TTL: the pin is renewed while the pass runs.
const PIN_NAME: &str = "segment-loop";
const PIN_TTL_S: i64 = 30;

/// One observer's state during a pass.
struct Tracked {
    observer: Arc<dyn DynObserver>,
    error: Mutex<Option<String>>,
    nanos: AtomicU64,
}

impl Tracked {
    fn failed(&self) -> bool {
        self.error.lock().unwrap().is_some()
    }

    fn fail(&self, step: &str, e: String) {
        let mut err = self.error.lock().unwrap();
        if err.is_none() {
            tracing::warn!(observer = self.observer.name(), step, error = %e, "observer failed; skipping it for this pass");
            *err = Some(format!("{step}: {e}"));
        }
    }

    /// Runs one call of the observer, timing it and recording its error.
    async fn call<T>(
        &self,
        step: &str,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> Option<T> {
        let t = Instant::now();
        let r = f.await;
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(step, e);
                None
            }
        }
    }
}

/// What one range's scan came to.
struct RangeOutcome {
    partials: Vec<Option<Box<dyn DynPartial>>>,
    segments: u64,
    unreadable: u64,
    failed: Option<String>,
}

/// The loop and its observers.
pub struct SegmentLoop {
    kv: Arc<dyn Kv>,
    section: LoopSection,
    observers: Vec<Arc<dyn DynObserver>>,
    last: Mutex<Option<PassReport>>,
}

impl SegmentLoop {
    /// A loop over the segments in `kv`, without observers yet.
    pub fn new(kv: Arc<dyn Kv>, section: LoopSection) -> SegmentLoop {
        SegmentLoop {
            kv,
            section,
            observers: Vec::new(),
            last: Mutex::new(None),
        }
    }

    /// Adds an observer; observers see each pass in the order they were added.
    pub fn add<O: Observer>(&mut self, observer: Arc<O>) {
        self.observers.push(observer::erase(observer));
    }

    /// The configuration.
    pub fn section(&self) -> &LoopSection {
        &self.section
    }

    /// The report of the last pass, if one ran.
    pub fn last_pass(&self) -> Option<PassReport> {
        self.last.lock().unwrap().clone()
    }

    /// Runs one pass while `active` holds and returns (and keeps) its report.
    pub async fn run_pass(&self, active: Active) -> PassReport {
        let report = self.pass(active).await;
        metrics::METRICS.observe(&report);
        tracing::info!(
            segments = report.segments,
            live = report.live_count,
            complete = report.complete,
            ms = report.duration_ms,
            "segment loop pass done"
        );
        *self.last.lock().unwrap() = Some(report.clone());
        report
    }

    async fn pass(&self, active: Active) -> PassReport {
        let t0 = Instant::now();
        let started = unix_now();
        let n = self.section.ranges.clamp(1, 1 << 16);
        let tracked: Arc<Vec<Tracked>> = Arc::new(
            self.observers
                .iter()
                .map(|o| Tracked {
                    observer: o.clone(),
                    error: Mutex::new(None),
                    nanos: AtomicU64::new(0),
                })
                .collect(),
        );
        let mut report = PassReport {
            started,
            duration_ms: 0,
            revision: 0,
            ranges: n,
            chunks: 1,
            segments: 0,
            live_count: 0,
            unreadable: 0,
            complete: false,
            incomplete: None,
            observers: Vec::new(),
        };
        let finish_report = |mut report: PassReport, tracked: &[Tracked]| {
            report.duration_ms = t0.elapsed().as_millis() as u64;
            report.observers = tracked
                .iter()
                .map(|t| ObserverReport {
                    name: t.observer.name().to_string(),
                    duration_ms: t.nanos.load(Ordering::Relaxed) / 1_000_000,
                    error: t.error.lock().unwrap().clone(),
                })
                .collect();
            report
        };
        let lease = match self.kv.lease_grant(PIN_TTL_S, 0).await {
            Ok(l) => l.id,
            Err(e) => {
                report.incomplete = Some(format!("could not take a lease for the pin: {e}"));
                return finish_report(report, &tracked);
            }
        };
        let revision = match pin_revision(&*self.kv, PIN_NAME, lease).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.kv.lease_revoke(lease).await;
                report.incomplete = Some(format!("could not pin a revision: {e}"));
                return finish_report(report, &tracked);
            }
        };
        report.revision = revision;
        let (live, scanned) = {
            let work = async {
                let live = self.live_count(revision).await;
                let chunks = live
                    .as_ref()
                    .map_or(1, |l| chunks(*l, n, self.section.batch));
                report.chunks = chunks;
                let scanned = self
                    .scan(
                        revision,
                        started,
                        n,
                        chunks,
                        tracked.clone(),
                        active.clone(),
                    )
                    .await;
                (live, scanned)
            };
            let keep_pin = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(PIN_TTL_S as u64 / 3)).await;
                    if let Err(e) = self.kv.lease_keep_alive(lease).await {
                        tracing::warn!(error = %e, "could not renew the segment loop's pin");
                    }
                }
            };
            tokio::select! {
                r = work => r,
                _ = keep_pin => unreachable!("the pin renewal never ends"),
            }
        };
        let (segments, unreadable, failed) = scanned;
        let live: Result<u64, KvError> = live;
        report.segments = segments;
        report.unreadable = unreadable;
        let incomplete = match (&failed, live) {
            (Some(f), _) => Some(f.clone()),
            (None, Err(e)) => Some(format!("could not count the segments: {e}")),
            (None, Ok(live)) => {
                report.live_count = live;
                if unreadable > 0 {
                    Some(format!("{unreadable} segment records did not decode"))
                } else if live != segments {
                    Some(format!(
                        "processed {segments} segments but the store holds {live} at revision {revision}"
                    ))
                } else if !active() {
                    Some("this loop stopped being the elected one during the pass".into())
                } else {
                    None
                }
            }
        };
        report.complete = incomplete.is_none();
        report.incomplete = incomplete;
        let end = PassEnd {
            revision,
            started,
            segments,
            complete: report.complete,
        };
        for t in tracked.iter().filter(|t| !t.failed()) {
            t.call("finish", t.observer.finish(&end)).await;
        }
        // The pin is attached to the lease: revoking it unpins.
        if let Err(e) = self.kv.lease_revoke(lease).await {
            tracing::warn!(error = %e, "could not unpin the segment loop's revision; its lease ends it");
        }
        finish_report(report, &tracked)
    }

    /// Starts the observers, scans every range and joins the partials: the segments
    /// processed, the records that did not decode, and why the scan fell short.
    async fn scan(
        &self,
        revision: i64,
        started: u64,
        n: usize,
        chunks: usize,
        tracked: Arc<Vec<Tracked>>,
        active: Active,
    ) -> (u64, u64, Option<String>) {
        let start = PassStart { revision, started };
        for t in tracked.iter() {
            t.call("start", t.observer.start(&start)).await;
        }
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let kv = self.kv.clone();
                let tracked = tracked.clone();
                let active = active.clone();
                let section = self.section.clone();
                tokio::spawn(async move {
                    scan_range(
                        kv,
                        &section,
                        revision,
                        RangeInfo { index: i, of: n },
                        chunks,
                        &tracked,
                        &*active,
                    )
                    .await
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(n);
        let mut failed = None;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    failed.get_or_insert(format!("range {i} stopped: {e}"));
                }
            }
        }
        let (mut segments, mut unreadable) = (0, 0);
        for o in &outcomes {
            segments += o.segments;
            unreadable += o.unreadable;
            if let Some(f) = &o.failed {
                failed.get_or_insert(f.clone());
            }
        }
        for (j, t) in tracked.iter().enumerate() {
            for o in outcomes.iter_mut() {
                let Some(p) = o.partials[j].take() else {
                    continue;
                };
                if t.failed() {
                    break;
                }
                t.call("join", t.observer.join(p)).await;
            }
        }
        (segments, unreadable, failed)
    }

    /// The segments in the store at `revision`, retried like a page.
    async fn live_count(&self, revision: i64) -> Result<u64, KvError> {
        let mut backoff = Backoff::new(Duration::from_secs(self.section.retry_s));
        loop {
            let r = self
                .kv
                .range(RangeRequest {
                    count_only: true,
                    revision,
                    ..RangeRequest::prefix(keys::SEGMENTS)
                })
                .await;
            match r {
                Ok(r) => return Ok(r.count.max(0) as u64),
                Err(e) if backoff.retry(&e).await => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Pages a chunk of a range holds, about: enough that per-request overhead stays
/// small, few enough that counting the rest of a chunk stays cheap.
pub const CHUNK_PAGES: u64 = 4;

/// Chunks each of `ranges` ranges is read in, for `live` segments in pages of `batch`
/// (chunks are 16-bit stream-id prefixes, so at most 65,536 in all).
pub fn chunks(live: u64, ranges: usize, batch: usize) -> usize {
    let per_chunk = CHUNK_PAGES * batch.max(1) as u64;
    let want = live.div_ceil(per_chunk * ranges as u64).max(1);
    (want as usize).min((1 << 16) / ranges).max(1)
}

/// Retries of a store read that fails: doubling waits from 100 ms up to 5 s, for as
/// long as the errors are transient and the first of the current run of failures is
/// less than `limit` ago.
struct Backoff {
    limit: Duration,
    failing_since: Option<Instant>,
    wait: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new(limit: Duration) -> Backoff {
        Backoff {
            limit,
            failing_since: None,
            wait: Self::FIRST,
        }
    }

    /// After a failure with `e`: waits and returns true if the read should be tried
    /// again, false if it should give up.
    async fn retry(&mut self, e: &KvError) -> bool {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if !transient(e) || since.elapsed() >= self.limit {
            return false;
        }
        tracing::debug!(error = %e, failing_s = since.elapsed().as_secs(), "segment loop read failed; retrying");
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Self::MAX);
        true
    }

    /// After a success: the next failure starts a new run.
    fn reset(&mut self) {
        self.failing_since = None;
        self.wait = Self::FIRST;
    }
}

/// Whether a store error may go away by itself (a leader change, a lost connection).
fn transient(e: &KvError) -> bool {
    !matches!(e, KvError::Compacted { .. } | KvError::FutureRevision)
}

/// A decoded page, or why the range's reading stopped.
type PageResult = Result<(Vec<LoopSegment>, u64), String>;

/// Reads one range at `revision` chunk by chunk and page by page, decoding each page
/// and sending it on; a transient store error retries the page from the cursor. Runs
/// as its own task so the next page is read and decoded while observers process the
/// last one.
async fn read_range(
    kv: Arc<dyn Kv>,
    section: LoopSection,
    revision: i64,
    range: RangeInfo,
    chunks: usize,
    pages: tokio::sync::mpsc::Sender<PageResult>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(section.retry_s));
    for chunk in 0..chunks {
        let (start, end) = keys::segment_range(range.index * chunks + chunk, range.of * chunks);
        let mut scan = Scan::new(&*kv, start, end, section.batch.max(1) as i64).at(revision);
        loop {
            let page = match scan.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                // The scan's cursor stays at the failed page: the retry resumes there.
                Err(e) if backoff.retry(&e).await => continue,
                Err(e) => {
                    let why = format!(
                        "range {} of {}: reading segments failed: {e}",
                        range.index, range.of
                    );
                    let _ = pages.send(Err(why)).await;
                    return;
                }
            };
            backoff.reset();
            let mut batch = Vec::with_capacity(page.len());
            let mut unreadable = 0;
            for kv in &page {
                match decode_segment(kv) {
                    Ok((stream, segment)) => batch.push(LoopSegment {
                        stream,
                        segment,
                        create_revision: kv.create_revision,
                        mod_revision: kv.mod_revision,
                    }),
                    Err(e) => {
                        unreadable += 1;
                        tracing::error!(error = %e, "segment loop: unreadable segment record");
                    }
                }
            }
            // The processing side stopped (a lost election): so does the reading.
            if pages.send(Ok((batch, unreadable))).await.is_err() {
                return;
            }
        }
    }
}

/// Scans one range at `revision`, handing each page to the range's partials.
async fn scan_range(
    kv: Arc<dyn Kv>,
    section: &LoopSection,
    revision: i64,
    range: RangeInfo,
    chunks: usize,
    tracked: &[Tracked],
    active: &(dyn Fn() -> bool + Send + Sync),
) -> RangeOutcome {
    let mut partials = Vec::with_capacity(tracked.len());
    for t in tracked {
        partials.push(match t.failed() {
            true => None,
            false => t.call("fork", t.observer.fork(&range)).await,
        });
    }
    let mut out = RangeOutcome {
        partials,
        segments: 0,
        unreadable: 0,
        failed: None,
    };
    // One page read ahead: reading and decoding overlap processing.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read_range(kv, section.clone(), revision, range, chunks, tx));
    loop {
        if !active() {
            out.failed = Some("this loop stopped being the elected one".into());
            break;
        }
        let batch = match rx.recv().await {
            Some(Ok((batch, unreadable))) => {
                out.unreadable += unreadable;
                batch
            }
            Some(Err(why)) => {
                out.failed = Some(why);
                break;
            }
            None => break,
        };
        out.segments += batch.len() as u64;
        for (t, slot) in tracked.iter().zip(out.partials.iter_mut()) {
            let Some(p) = slot else { continue };
            if t.failed() || t.call("process", p.process(&batch)).await.is_none() {
                *slot = None;
            }
        }
    }
    // A reader still retrying a page after the processing stopped has nothing to do.
    reader.abort();
    if let Err(Some(e)) = reader.await.map_err(|e| e.is_panic().then_some(e)) {
        out.failed.get_or_insert(format!(
            "range {} of {}: the reader stopped: {e}",
            range.index, range.of
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_with_the_live_count_and_tile_their_range() {
        assert_eq!(chunks(0, 2, 2500), 1);
        assert_eq!(chunks(10_000, 1, 2500), 1);
        assert_eq!(chunks(1_000_000, 1, 2500), 100);
        assert_eq!(chunks(1_000_000, 4, 2500), 25);
        assert_eq!(chunks(u64::MAX / 2, 3, 1), (1 << 16) / 3);
        assert_eq!(chunks(u64::MAX / 2, 1 << 16, 1), 1);
        for (n, c) in [(1, 7), (3, 5), (4, 25), (7, 9)] {
            for i in 0..n {
                let whole = keys::segment_range(i, n);
                let first = keys::segment_range(i * c, n * c);
                let last = keys::segment_range(i * c + c - 1, n * c);
                assert_eq!((first.0, last.1), whole, "range {i} of {n} in {c} chunks");
                for j in 0..c - 1 {
                    assert_eq!(
                        keys::segment_range(i * c + j, n * c).1,
                        keys::segment_range(i * c + j + 1, n * c).0
                    );
                }
            }
        }
    }
}
