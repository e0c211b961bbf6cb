//! The `accounting` process: rolls settled orders, payments and tallies up into the
//! hourly, daily and monthly rollups reports and limits read. Any number may run at
//! once: every fold compares what it read, so each order is counted once.

use crate::config::Services;
use orbit_accounting::AccountingService;
use orbit_kv::Kv;
use orbit_worker::{Group, Handle, Interval};
use std::sync::Arc;
use std::time::Duration;

/// A built `accounting` process.
pub struct AccountingProcess {
    /// The service.
    pub service: Arc<AccountingService>,
    /// Its worker (tests trigger rounds through it).
    pub worker: Handle,
}

impl AccountingProcess {
    /// Builds it from the `[accounting]` section over `kv`; its worker joins
    /// `workers`.
    pub fn build(services: &Services, kv: Arc<dyn Kv>, workers: &Group) -> AccountingProcess {
        let section = services.accounting.clone().unwrap_or_default();
        let every = Duration::from_secs(section.interval_s.max(1));
        let service = Arc::new(AccountingService::new(kv, section));
        let s = service.clone();
        let worker = workers.spawn("accounting", Interval::every(every), move || {
            let s = s.clone();
            orbit_worker::job(async move {
                let r = s.run_once().await.map_err(|e| e.to_string())?;
                if r.orders + r.days > 0 {
                    tracing::debug!(orders = r.orders, days = r.days, "accounting round");
                }
                Ok(())
            })
        });
        AccountingProcess { service, worker }
    }

    /// Its part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({ "last_round": self.service.last_round() })
    }
}
