//! The expiry observer: every segment of an expired object the loop meets is deleted
//! (by a compare on the revision the pass read, so a segment rewritten meanwhile
//! stays). Readers already treat the object as gone; the API's sweep deletes its
//! record, and the nodes delete its pieces by their own order limits.

use orbit_kv::{DeleteRequest, Kv, TxnOp, TxnRequest};
use orbit_satellite_model::keys;
use orbit_segment_loop::{LoopSegment, Observer, Partial, PassEnd, PassStart, RangeInfo};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Deletes in flight at once while joining a range.
const DELETES: usize = 16;

/// What the observer's last pass dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryStats {
    /// The pass's revision.
    pub pass: i64,
    /// Expired segments deleted.
    pub dropped: u64,
}

/// One range's expired segments: key and the revision the pass read.
pub struct ExpiryPartial {
    now: u64,
    expired: Vec<(String, i64)>,
}

#[async_trait::async_trait]
impl Partial for ExpiryPartial {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        for s in segments {
            let e = s.segment.expires;
            if e != 0 && e <= self.now {
                self.expired
                    .push((keys::segment(&s.stream, s.segment.index), s.mod_revision));
            }
        }
        Ok(())
    }
}

/// The expiry observer.
pub struct ExpiryObserver {
    kv: Arc<dyn Kv>,
    pass: Mutex<Option<(PassStart, u64)>>,
    last: Mutex<Option<ExpiryStats>>,
}

impl ExpiryObserver {
    /// An observer deleting expired segments from `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> ExpiryObserver {
        ExpiryObserver {
            kv,
            pass: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The last finished pass's figures.
    pub fn stats(&self) -> Option<ExpiryStats> {
        self.last.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Observer for ExpiryObserver {
    type Partial = ExpiryPartial;

    fn name(&self) -> &'static str {
        "expiry"
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        *self.pass.lock().unwrap() = Some((*pass, 0));
        Ok(())
    }

    async fn fork(&self, _range: &RangeInfo) -> Result<ExpiryPartial, String> {
        let p = self.pass.lock().unwrap();
        let (start, _) = p.as_ref().ok_or("fork before start")?;
        Ok(ExpiryPartial {
            now: start.started,
            expired: Vec::new(),
        })
    }

    async fn join(&self, partial: ExpiryPartial) -> Result<(), String> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let dropped: Vec<bool> = stream::iter(partial.expired)
            .map(|(key, rev)| async move {
                let txn = TxnRequest::if_unchanged(
                    key.clone(),
                    rev,
                    vec![TxnOp::Delete(DeleteRequest::key(key))],
                );
                self.kv
                    .txn(txn)
                    .await
                    .map(|r| r.succeeded)
                    .map_err(|e| format!("deleting an expired segment: {e}"))
            })
            .buffer_unordered(DELETES)
            .try_collect()
            .await?;
        let mut p = self.pass.lock().unwrap();
        let (_, n) = p.as_mut().ok_or("join before start")?;
        *n += dropped.into_iter().filter(|d| *d).count() as u64;
        Ok(())
    }

    async fn finish(&self, _end: &PassEnd) -> Result<(), String> {
        let (start, dropped) = self
            .pass
            .lock()
            .unwrap()
            .take()
            .ok_or("finish before start")?;
        if dropped > 0 {
            tracing::info!(dropped, "expired segments dropped");
        }
        *self.last.lock().unwrap() = Some(ExpiryStats {
            pass: start.revision,
            dropped,
        });
        Ok(())
    }
}
