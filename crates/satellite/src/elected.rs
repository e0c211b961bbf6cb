//! Election of a process that must run once at a time (the loop, uptime): the
//! campaign worker every such process runs, through a lease in the store.

use orbit_kv::election::Candidate;
use orbit_kv::Kv;
use orbit_satellite_model::{keys, requests};
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A campaign for the leadership of `what` (`loop`, `uptime`), stepped by a worker.
#[derive(Clone)]
pub struct Election {
    /// The campaign.
    pub candidate: Arc<Candidate>,
    what: &'static str,
    kv: Arc<dyn Kv>,
}

impl Election {
    /// Campaigns as `name` for `what` with a lease of `ttl_s`; the worker
    /// `<what>-election` joins `workers`.
    pub fn start(
        what: &'static str,
        name: &str,
        ttl_s: i64,
        kv: Arc<dyn Kv>,
        workers: &Group,
    ) -> Election {
        let candidate = Arc::new(Candidate::new(keys::leader(what), name, ttl_s));
        // Three steps per TTL: a holder renews well before its lease ends, and a
        // standby tries again at most a third of a TTL after the key is free.
        let step = Duration::from_millis((candidate.ttl() as u64 * 1000 / 3).max(100));
        let (k, c) = (kv.clone(), candidate.clone());
        workers.spawn(
            &Self::worker_name(what),
            Interval::every(step).starting_now(),
            move || {
                let (kv, candidate) = (k.clone(), c.clone());
                orbit_worker::job(async move {
                    let was = candidate.is_leader();
                    let now = candidate.step(&*kv).await.map_err(|e| e.to_string())?;
                    if now != was {
                        let holder = candidate.standing().holder.unwrap_or_default();
                        match now {
                            true => tracing::info!(process = what, "this process now leads"),
                            false => tracing::warn!(process = what, %holder, "this process no longer leads"),
                        }
                    }
                    Ok(())
                })
            },
        );
        Election {
            candidate,
            what,
            kv,
        }
    }

    /// Carries out the operators' run requests for this process while it leads:
    /// every second the worker `<what>-requests` takes a waiting request and
    /// triggers the worker `run` (which must already be in `workers`).
    pub fn serve_requests(&self, run: &str, workers: &Group) {
        let Some(handle) = workers.handle(run) else {
            tracing::error!(
                process = self.what,
                worker = run,
                "no such worker to run on request"
            );
            return;
        };
        let (kv, candidate, what) = (self.kv.clone(), self.candidate.clone(), self.what);
        let every = Interval::every(Duration::from_secs(1));
        workers.spawn(&format!("{what}-requests"), every, move || {
            let (kv, candidate, handle) = (kv.clone(), candidate.clone(), handle.clone());
            orbit_worker::job(async move {
                if !candidate.is_leader() {
                    return Ok(());
                }
                if let Some(r) = requests::take(&*kv, what)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    tracing::info!(process = what, by = %r.by, "run requested");
                    handle.trigger();
                }
                Ok(())
            })
        });
    }

    /// The campaign worker's name.
    pub fn worker_name(what: &str) -> String {
        format!("{what}-election")
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        self.candidate.is_leader()
    }

    /// Who leads, as JSON for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let s = self.candidate.standing();
        serde_json::json!({ "leader": s.leader, "holder": s.holder })
    }

    /// Stops campaigning and gives the leadership up (at shutdown), so a standby
    /// takes over at once.
    pub async fn resign(&self, workers: &Group) {
        if let Some(h) = workers.handle(&Self::worker_name(self.what)) {
            h.pause();
        }
        if let Err(e) = self.candidate.resign(&*self.kv).await {
            tracing::warn!(process = self.what, error = %e, "could not resign the leadership");
        }
    }
}
