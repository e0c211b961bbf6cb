//! The `loop` process: the segment loop and its observers (the repair checker),
//! composed here for `satellite run loop` and testplanet alike. Any number may run;
//! they elect one through a lease in the store, and only that one runs passes. The
//! others stand by and take over within the lease's TTL when it dies.

use crate::config::Services;
use crate::elected::Election;
use orbit_accounting::TallyObserver;
use orbit_audit::AuditObserver;
use orbit_gc::{ExpiryObserver, GcObserver};
use orbit_kv::Kv;
use orbit_repair::Checker;
use orbit_satellite_model::repair::HealthRules;
use orbit_segment_loop::{Active, SegmentLoop};
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `loop` process; its workers run in the group it was built with.
pub struct LoopProcess {
    /// The loop and its observers.
    pub segment_loop: Arc<SegmentLoop>,
    /// This process's campaign for the loop's leadership.
    pub election: Election,
    /// The repair checker observer.
    pub checker: Arc<Checker>,
    /// The audit sampling observer.
    pub sampler: Arc<AuditObserver>,
    /// The garbage-collection filter observer.
    pub gc: Arc<GcObserver>,
    /// The observer that drops expired segments.
    pub expiry: Arc<ExpiryObserver>,
    /// The tally observer.
    pub tally: Arc<TallyObserver>,
}

impl LoopProcess {
    /// Builds the loop from the `[loop]` section (defaults when absent) over `kv`,
    /// campaigning as `name`; its election and pass workers join `workers`.
    pub fn build(services: &Services, kv: Arc<dyn Kv>, name: &str, workers: &Group) -> LoopProcess {
        let section = services.segment_loop.clone().unwrap_or_default();
        // Pieces are judged by the storage API's own rules for online nodes and
        // networks, so the checker, node selection and repair agree.
        let storage = services.storage.clone().unwrap_or_default();
        let checker = Arc::new(Checker::new(
            kv.clone(),
            HealthRules {
                online_window_s: storage.online_window_s,
                distinct_networks: storage.distinct_networks,
            },
        ));
        let audit = services.audit.clone().unwrap_or_default();
        let sampler = Arc::new(AuditObserver::new(kv.clone(), audit.slots));
        let mut segment_loop = SegmentLoop::new(kv.clone(), section.clone());
        segment_loop.add(checker.clone());
        segment_loop.add(sampler.clone());
        let gc = Arc::new(GcObserver::new(
            kv.clone(),
            services.gc.clone().unwrap_or_default(),
        ));
        segment_loop.add(gc.clone());
        let expiry = Arc::new(ExpiryObserver::new(kv.clone()));
        segment_loop.add(expiry.clone());
        let tally = Arc::new(TallyObserver::new(kv.clone()));
        segment_loop.add(tally.clone());
        let p = LoopProcess {
            segment_loop: Arc::new(segment_loop),
            election: Election::start("loop", name, section.leader_ttl_s, kv, workers),
            checker,
            sampler,
            gc,
            expiry,
            tally,
        };
        p.spawn(workers, Duration::from_secs(section.interval_s.max(1)));
        p.election.serve_requests("segment-loop", workers);
        p
    }

    fn spawn(&self, workers: &Group, interval: Duration) {
        let (segment_loop, candidate) =
            (self.segment_loop.clone(), self.election.candidate.clone());
        workers.spawn("segment-loop", Interval::every(interval), move || {
            let (segment_loop, candidate) = (segment_loop.clone(), candidate.clone());
            orbit_worker::job(async move {
                if !candidate.is_leader() {
                    return Ok(());
                }
                let c = candidate.clone();
                let active: Active = Arc::new(move || c.is_leader());
                let report = segment_loop.run_pass(active).await;
                match report.problems() {
                    Some(p) => Err(p),
                    None => Ok(()),
                }
            })
        });
    }

    /// The loop's part of `/status`: who leads, and the last pass this process ran.
    pub fn status(&self) -> serde_json::Value {
        let mut s = self.election.status();
        s["last_pass"] = serde_json::json!(self.segment_loop.last_pass());
        s["repair_checker"] = serde_json::json!(self.checker.stats());
        s["audit_sampler"] = serde_json::json!(self.sampler.stats());
        s["gc_filters"] = serde_json::json!(self.gc.stats());
        s["expiry"] = serde_json::json!(self.expiry.stats());
        s["tally"] = serde_json::json!(self.tally.stats());
        s
    }
}
