//! The `gc` process: hands each storage node the newest garbage-collection filter the
//! loop built for it. Any number may run; one is elected to send.

use crate::config::Services;
use crate::elected::Election;
use orbit_gc::Sender;
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `gc` process.
pub struct GcProcess {
    /// The sender.
    pub sender: Arc<Sender>,
    /// This process's campaign to be the one that sends.
    pub election: Election,
}

impl GcProcess {
    /// Builds it from the `[gc]` section over `kv`, signing filters as `satellite`,
    /// campaigning as `name`; its election and sender workers join `workers`.
    pub fn build(
        services: &Services,
        kv: Arc<dyn Kv>,
        satellite: Identity,
        name: &str,
        workers: &Group,
    ) -> GcProcess {
        let section = services.gc.clone().unwrap_or_default();
        let sender = Arc::new(Sender::new(kv.clone(), satellite, section.clone()));
        let election = Election::start("gc", name, section.leader_ttl_s, kv, workers);
        let (s, c) = (sender.clone(), election.candidate.clone());
        let every = Interval::every(Duration::from_secs(section.interval_s.max(1)));
        workers.spawn("gc", every, move || {
            let (s, c) = (s.clone(), c.clone());
            orbit_worker::job(async move {
                if !c.is_leader() {
                    return Ok(());
                }
                s.run_once().await.map(|_| ())
            })
        });
        election.serve_requests("gc", workers);
        GcProcess { sender, election }
    }

    /// Its part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut s = self.election.status();
        s["last_round"] = serde_json::json!(self.sender.last_round());
        s
    }
}
