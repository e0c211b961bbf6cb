//! The `audit` process: audit workers draining the reverification and verification
//! queues. Any number may run, each with several audits at once; claims in the store
//! keep them off each other's jobs.

use crate::config::Services;
use crate::repair::spawn_lease;
use orbit_audit::Auditor;
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_worker::{Group, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `audit` process.
pub struct AuditProcess {
    /// The auditor.
    pub auditor: Arc<Auditor>,
}

impl AuditProcess {
    /// Builds it from the `[audit]`, `[reputation]` and `[storage]` sections over
    /// `kv`, signing order limits as `satellite`, its claims naming `name`; its lease
    /// and audit workers join `workers`.
    pub fn build(
        services: &Services,
        kv: Arc<dyn Kv>,
        satellite: Identity,
        name: &str,
        workers: &Group,
    ) -> AuditProcess {
        let section = services.audit.clone().unwrap_or_default();
        let storage = services.storage.clone().unwrap_or_default();
        let auditor = Arc::new(Auditor::new(
            name,
            kv,
            satellite,
            section.clone(),
            services.reputation.unwrap_or_default(),
            storage.order_expiration_s,
        ));
        let a = auditor.clone();
        spawn_lease(workers, "audit-lease", section.lease_ttl_s, move || {
            let a = a.clone();
            orbit_worker::job(async move { a.keep_lease().await.map(|_| ()) })
        });
        let a = auditor.clone();
        let every = Interval::every(Duration::from_secs(section.interval_s.max(1)));
        workers.spawn("audit", every, move || {
            let a = a.clone();
            orbit_worker::job(async move { a.run_once().await.map(|_| ()) })
        });
        AuditProcess { auditor }
    }

    /// Its part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!(self.auditor.stats())
    }
}
