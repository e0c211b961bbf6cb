//! The `uptime` process: contacts storage nodes the satellite has not heard from and
//! records whether they answered. Any number may run; one is elected to contact.

use crate::config::Services;
use crate::elected::Election;
use orbit_kv::Kv;
use orbit_uptime::Uptime;
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `uptime` process.
pub struct UptimeProcess {
    /// The service.
    pub uptime: Arc<Uptime>,
    /// This process's campaign to be the one that contacts.
    pub election: Election,
}

impl UptimeProcess {
    /// Builds it from the `[uptime]` section over `kv`, campaigning as `name`; its
    /// election and contact workers join `workers`.
    pub fn build(
        services: &Services,
        kv: Arc<dyn Kv>,
        name: &str,
        workers: &Group,
    ) -> UptimeProcess {
        let section = services.uptime.clone().unwrap_or_default();
        let reputation = services.reputation.unwrap_or_default();
        let uptime = Arc::new(Uptime::new(kv.clone(), section.clone(), reputation));
        let election = Election::start("uptime", name, section.leader_ttl_s, kv, workers);
        let (u, c) = (uptime.clone(), election.candidate.clone());
        let every = Interval::every(Duration::from_secs(section.interval_s.max(1)));
        workers.spawn("uptime", every, move || {
            let (u, c) = (u.clone(), c.clone());
            orbit_worker::job(async move {
                if !c.is_leader() {
                    return Ok(());
                }
                let round = u.round().await?;
                if round.contacted > 0 {
                    tracing::debug!(
                        contacted = round.contacted,
                        reached = round.reached,
                        "uptime round"
                    );
                }
                Ok(())
            })
        });
        UptimeProcess { uptime, election }
    }

    /// Its part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut s = self.election.status();
        s["last_round"] = serde_json::json!(self.uptime.last_round());
        s
    }
}
