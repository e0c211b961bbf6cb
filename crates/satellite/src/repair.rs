//! The `repair` process: repair workers draining the repair queue. Any number may
//! run, each with several repairs at once; claims in the store keep them off each
//! other's segments.

use crate::config::Services;
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_repair::Repairer;
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `repair` process.
pub struct RepairProcess {
    /// The repairer.
    pub repairer: Arc<Repairer>,
}

impl RepairProcess {
    /// Builds it from the `[repair]` and `[storage]` sections over `kv`, signing order
    /// limits as `satellite`, its claims naming `name`; its lease and repair workers
    /// join `workers`.
    pub fn build(
        services: &Services,
        kv: Arc<dyn Kv>,
        satellite: Identity,
        name: &str,
        workers: &Group,
    ) -> RepairProcess {
        let section = services.repair.clone().unwrap_or_default();
        let storage = services.storage.clone().unwrap_or_default();
        let repairer = Arc::new(Repairer::new(
            name,
            kv,
            satellite,
            storage.selection(),
            section.clone(),
            storage.order_expiration_s,
        ));
        let r = repairer.clone();
        spawn_lease(workers, "repair-lease", section.lease_ttl_s, move || {
            let r = r.clone();
            orbit_worker::job(async move { r.keep_lease().await.map(|_| ()) })
        });
        let r = repairer.clone();
        let every = Interval::every(Duration::from_secs(section.interval_s.max(1)));
        workers.spawn("repair", every, move || {
            let r = r.clone();
            orbit_worker::job(async move { r.run_once().await.map(|_| ()) })
        });
        RepairProcess { repairer }
    }

    /// Its part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!(self.repairer.stats())
    }
}

/// Spawns the worker `name` that keeps a claims' lease of `ttl_s` alive with `keep`:
/// renewed three times per TTL from the start, so claims outlive a slow renewal or
/// two.
pub(crate) fn spawn_lease<F>(workers: &Group, name: &str, ttl_s: i64, keep: F)
where
    F: FnMut() -> orbit_worker::JobFuture + Send + 'static,
{
    let step = Duration::from_millis((ttl_s.max(1) as u64 * 1000 / 3).max(100));
    workers.spawn(name, Interval::every(step).starting_now(), keep);
}
