//! The accounting service behind `satellite run accounting`: each round folds the
//! settled orders and payments waiting into the hourly and monthly rollups, then the
//! days that are over into daily rollups (see `orbit_satellite_model::accounting`).
//! Every fold compares what it read, so any number of processes may run at once and
//! still count each order once.

use orbit_kv::Kv;
use orbit_satellite_model::accounting::{Accounting, Prices, Rates, Report};
use orbit_satellite_model::{unix_now, Error};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The `[accounting]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingSection {
    /// Seconds between rounds.
    pub interval_s: u64,
    /// What storage nodes are paid.
    pub rates: Rates,
    /// What projects are charged.
    pub prices: Prices,
}

impl Default for AccountingSection {
    fn default() -> Self {
        AccountingSection {
            interval_s: 60,
            rates: Rates::default(),
            prices: Prices::default(),
        }
    }
}

/// What the last round did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoundStats {
    /// Unix time (s) it ran.
    pub at: u64,
    /// Settled orders and payments folded into hourly and monthly rollups.
    pub orders: usize,
    /// Hourly rollups and tallies folded into daily ones.
    pub days: usize,
    /// Folds that lost a race to another accounting process and were read again.
    pub conflicts: usize,
}

/// The service.
pub struct AccountingService {
    accounting: Accounting,
    section: AccountingSection,
    last: Mutex<Option<RoundStats>>,
}

impl AccountingService {
    /// The service over `kv`.
    pub fn new(kv: Arc<dyn Kv>, section: AccountingSection) -> AccountingService {
        AccountingService {
            accounting: Accounting::new(kv),
            section,
            last: Mutex::new(None),
        }
    }

    /// One round at `now`.
    pub async fn round(&self, now: u64) -> Result<RoundStats, Error> {
        let orders = self.accounting.roll_orders().await?;
        let days = self.accounting.roll_days(now).await?;
        let stats = RoundStats {
            at: now,
            orders: orders.folded,
            days: days.folded,
            conflicts: orders.conflicts + days.conflicts,
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats.clone());
        Ok(stats)
    }

    /// One round now.
    pub async fn run_once(&self) -> Result<RoundStats, Error> {
        self.round(unix_now()).await
    }

    /// The last round's figures.
    pub fn last_round(&self) -> Option<RoundStats> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The report of month `period` (`YYYY-MM`) at the configured rates and prices.
    pub async fn report(&self, period: &str) -> Result<Report, Error> {
        let usage = self.accounting.period(period).await?;
        Ok(Report::new(
            &usage,
            &self.section.rates,
            &self.section.prices,
        ))
    }
}
