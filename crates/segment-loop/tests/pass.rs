//! Passes of the segment loop over a real store member: every segment once whatever
//! the ranges, one revision for the whole pass (pinned), observers isolated from each
//! other's errors, transient store errors retried from the cursor, and a pass that
//! missed anything reported incomplete.

use orbit_identity::NodeId;
use orbit_kv::*;
use orbit_protocol::PieceId;
use orbit_satellite_model::keys;
use orbit_satellite_model::metainfo::{Redundancy, Segment};
use orbit_segment_loop::*;
use orbit_testkit::{OrbitCluster, Timings};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn segment(index: u32, inline: bool) -> Segment {
    Segment {
        index,
        encrypted_size: 1000,
        inline: inline.then(|| vec![7; 10]),
        redundancy: Redundancy {
            k: 2,
            repair: 3,
            success: 4,
            total: 5,
        },
        root: PieceId([index as u8; 32]),
        piece_size: 500,
        created: 0,
        expires: 0,
        pieces: (0..4).map(|n| (n, NodeId([n as u8 + 1; 32]))).collect(),
    }
}

/// Stream ids spread over the whole key space, as random ones are.
fn stream(i: u32) -> keys::StreamId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
    id[4..8].copy_from_slice(&i.to_be_bytes());
    id
}

/// Seeds `n` segments (three per stream) and returns their keys.
async fn seed(kv: &dyn Kv, n: u32) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    for i in 0..n {
        let (s, idx) = (stream(i / 3), i % 3);
        let key = keys::segment(&s, idx);
        kv.put(PutRequest::new(
            key.clone(),
            record::encode(&segment(idx, i % 5 == 0)),
        ))
        .await
        .unwrap();
        keys.insert(key.into_bytes());
    }
    keys
}

/// Records every segment it sees and every call, and checks the call order.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Vec<u8>>>,
    revision: Mutex<i64>,
    calls: Mutex<Vec<String>>,
    finished: Mutex<Option<PassEnd>>,
    fail_process: AtomicBool,
    /// Written into the store during `start`: a pass must not see it.
    write_during: Mutex<Option<Arc<dyn Kv>>>,
    pin_seen: Mutex<Option<i64>>,
}

struct RecorderPartial {
    range: RangeInfo,
    seen: Vec<Vec<u8>>,
    fail: bool,
}

#[async_trait::async_trait]
impl Partial for RecorderPartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        if self.fail {
            return Err("the recorder was told to fail".into());
        }
        for s in segments {
            let key = keys::segment(&s.stream, s.segment.index).into_bytes();
            let (a, b) = keys::segment_range(self.range.index, self.range.of);
            assert!(a <= key && key < b, "a segment outside its range");
            assert!(s.mod_revision > 0 && s.create_revision > 0);
            self.seen.push(key);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Observer for Recorder {
    type Partial = RecorderPartial;

    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        *self.revision.lock().unwrap() = pass.revision;
        self.calls.lock().unwrap().push("start".into());
        let kv = self.write_during.lock().unwrap().clone();
        if let Some(kv) = kv {
            let pin = kv
                .get(format!("{PIN_PREFIX}segment-loop").as_bytes())
                .await
                .unwrap()
                .map(|p| String::from_utf8(p.value).unwrap().parse::<i64>().unwrap());
            *self.pin_seen.lock().unwrap() = pin;
            let key = keys::segment(&stream(999_999), 0);
            kv.put(PutRequest::new(key, record::encode(&segment(0, false))))
                .await
                .unwrap();
        }
        Ok(())
    }

    async fn fork(&self, range: &RangeInfo) -> Result<RecorderPartial, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("fork {}", range.index));
        Ok(RecorderPartial {
            range: *range,
            seen: Vec::new(),
            fail: self.fail_process.load(Ordering::SeqCst),
        })
    }

    async fn join(&self, partial: RecorderPartial) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("join {}", partial.range.index));
        self.seen.lock().unwrap().extend(partial.seen);
        Ok(())
    }

    async fn finish(&self, pass: &PassEnd) -> Result<(), String> {
        self.calls.lock().unwrap().push("finish".into());
        *self.finished.lock().unwrap() = Some(pass.clone());
        Ok(())
    }
}

fn always() -> Active {
    Arc::new(|| true)
}

fn section(ranges: usize, batch: usize) -> LoopSection {
    LoopSection {
        ranges,
        batch,
        retry_s: 10,
        ..LoopSection::default()
    }
}

#[tokio::test]
async fn a_pass_sees_every_segment_once_at_one_pinned_revision() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let want = seed(&*kv, 1000).await;
    for ranges in [1, 2, 3, 4, 7] {
        let rec = Arc::new(Recorder::default());
        *rec.write_during.lock().unwrap() = Some(kv.clone());
        let mut l = SegmentLoop::new(kv.clone(), section(ranges, 64));
        l.add(rec.clone());
        let report = l.run_pass(always()).await;
        // The segment written during the pass is after its revision, so not in it.
        let key = keys::segment(&stream(999_999), 0);
        kv.delete(DeleteRequest::key(key)).await.unwrap();
        assert!(report.complete, "{ranges} ranges: {report:?}");
        assert_eq!(report.segments, 1000);
        assert_eq!(report.live_count, 1000);
        assert_eq!(report.ranges, ranges);
        // About four pages a chunk: one range is read in four chunks, seven in one.
        assert_eq!(report.chunks, 1000usize.div_ceil(4 * 64 * ranges));
        assert_eq!(*rec.pin_seen.lock().unwrap(), Some(report.revision));
        let mut seen = rec.seen.lock().unwrap().clone();
        seen.sort();
        let n = seen.len();
        seen.dedup();
        assert_eq!(n, seen.len(), "a segment seen twice with {ranges} ranges");
        assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);
        let calls = rec.calls.lock().unwrap().clone();
        let mut expected = vec!["start".to_string()];
        expected.extend((0..ranges).map(|i| format!("fork {i}")));
        expected.extend((0..ranges).map(|i| format!("join {i}")));
        expected.push("finish".into());
        let mut sorted_calls = calls.clone();
        // Forks run in their ranges' tasks, in any order among themselves.
        sorted_calls[1..=ranges].sort();
        assert_eq!(sorted_calls, expected, "{ranges} ranges");
        let end = rec.finished.lock().unwrap().clone().unwrap();
        assert!(end.complete);
        assert_eq!(end.revision, report.revision);
        // The pin is gone with the pass.
        assert!(kv
            .get(format!("{PIN_PREFIX}segment-loop").as_bytes())
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn an_observer_error_skips_only_that_observer() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    seed(&*kv, 300).await;
    let bad = Arc::new(Recorder::default());
    bad.fail_process.store(true, Ordering::SeqCst);
    let good = Arc::new(Recorder::default());
    let mut l = SegmentLoop::new(kv.clone(), section(3, 50));
    l.add(bad.clone());
    l.add(good.clone());
    let report = l.run_pass(always()).await;
    assert!(report.complete, "{report:?}");
    assert!(report.observers[0]
        .error
        .as_deref()
        .unwrap()
        .contains("told to fail"));
    assert_eq!(report.observers[1].error, None);
    assert!(
        bad.finished.lock().unwrap().is_none(),
        "finish of a failed observer"
    );
    assert!(!bad
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.starts_with("join")));
    assert_eq!(good.seen.lock().unwrap().len(), 300);
    assert!(good.finished.lock().unwrap().as_ref().unwrap().complete);
    assert!(report.problems().unwrap().contains("observer recorder"));
}

#[tokio::test]
async fn a_corrupt_record_or_a_lost_election_makes_the_pass_incomplete() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    seed(&*kv, 100).await;
    let corrupt = keys::segment(&stream(5000), 0);
    kv.put(PutRequest::new(corrupt.clone(), "{not json"))
        .await
        .unwrap();
    let rec = Arc::new(Recorder::default());
    let mut l = SegmentLoop::new(kv.clone(), section(2, 30));
    l.add(rec.clone());
    let report = l.run_pass(always()).await;
    assert!(!report.complete);
    assert_eq!(report.unreadable, 1);
    assert_eq!(report.segments, 100);
    assert_eq!(report.live_count, 101);
    assert!(report.incomplete.unwrap().contains("did not decode"));
    let end = rec.finished.lock().unwrap().clone().unwrap();
    assert!(!end.complete, "observers are told the pass is incomplete");
    kv.delete(DeleteRequest::key(corrupt)).await.unwrap();

    // Leadership lost half way: the pass stops and says why.
    let pages = Arc::new(AtomicUsize::new(0));
    let p = pages.clone();
    let active: Active = Arc::new(move || p.fetch_add(1, Ordering::SeqCst) < 2);
    let report = l.run_pass(active).await;
    assert!(!report.complete);
    assert!(
        report.incomplete.as_deref().unwrap().contains("elected"),
        "{report:?}"
    );
    assert!(report.segments < 100);
}

/// A store that fails every third range read with a transient error.
struct Flaky {
    inner: Arc<dyn Kv>,
    reads: AtomicUsize,
    failed: AtomicUsize,
}

#[async_trait::async_trait]
impl Kv for Flaky {
    async fn range(&self, req: RangeRequest) -> KvResult<RangeResponse> {
        let scan = !req.count_only && req.key.starts_with(keys::SEGMENTS.as_bytes());
        if scan && self.reads.fetch_add(1, Ordering::SeqCst) % 3 == 1 {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(KvError::Unavailable("injected: connection reset".into()));
        }
        self.inner.range(req).await
    }
    async fn put(&self, req: PutRequest) -> KvResult<PutResponse> {
        self.inner.put(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> KvResult<DeleteResponse> {
        self.inner.delete(req).await
    }
    async fn txn(&self, req: TxnRequest) -> KvResult<TxnResponse> {
        self.inner.txn(req).await
    }
    async fn compact(&self, revision: i64) -> KvResult<()> {
        self.inner.compact(revision).await
    }
    async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse> {
        self.inner.lease_grant(ttl, id).await
    }
    async fn lease_revoke(&self, id: i64) -> KvResult<()> {
        self.inner.lease_revoke(id).await
    }
    async fn lease_keep_alive(&self, id: i64) -> KvResult<i64> {
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<LeaseTimeToLiveResponse> {
        self.inner.lease_time_to_live(id, keys).await
    }
    async fn leases(&self) -> KvResult<Vec<i64>> {
        self.inner.leases().await
    }
    async fn watch(&self, key: Vec<u8>, opts: WatchOptions) -> KvResult<WatchStream> {
        self.inner.watch(key, opts).await
    }
    async fn members(&self) -> KvResult<Vec<Member>> {
        self.inner.members().await
    }
    async fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> KvResult<Vec<AlarmMember>> {
        self.inner.alarm(action, member_id, alarm).await
    }
}

#[tokio::test]
async fn transient_store_errors_are_retried_from_the_cursor() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let inner: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let want = seed(&*inner, 500).await;
    let flaky = Arc::new(Flaky {
        inner,
        reads: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let rec = Arc::new(Recorder::default());
    let mut l = SegmentLoop::new(flaky.clone(), section(2, 40));
    l.add(rec.clone());
    let report = l.run_pass(always()).await;
    assert!(
        flaky.failed.load(Ordering::SeqCst) >= 4,
        "errors were injected"
    );
    assert!(report.complete, "{report:?}");
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        500,
        "a retried page was processed twice or lost"
    );
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);
}
