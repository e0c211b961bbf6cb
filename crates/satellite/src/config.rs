//! The satellite's root configuration: one TOML file made of the replica's own
//! settings (top level and `[[replica]]` rows, see docs/replicas.md) and one section
//! per service, each defined beside its service with documented defaults:
//!
//! - `[api]`: where the public gRPC API listens ([`crate::api::ApiSection`]);
//! - `[storage]`: the storage network API ([`orbit_satellite_api::StorageSection`]);
//! - `[payments]`: payment channels ([`orbit_payments::PaymentsConfig`]);
//! - `[loop]`: the segment loop ([`orbit_segment_loop::LoopSection`]);
//! - `[repair]`: the repair workers ([`orbit_repair::RepairSection`]);
//! - `[uptime]`: node contacts ([`orbit_uptime::UptimeSection`]);
//! - `[audit]`, `[gc]`, `[reputation]`: audits, garbage collection, node scores;
//! - `[accounting]`: rollups, payout rates and prices
//!   ([`orbit_accounting::AccountingSection`]);
//! - `[console]`: the users' web console, served by `api` ([`orbit_console::ConsoleSection`]);
//! - `[private_api]`: the operators' HTTP API
//!   ([`crate::private_api::PrivateApiSection`]);
//! - `[version]`: the version check every process makes, and what `satellite run
//!   version` serves ([`orbit_version::VersionSection`]).
//!
//! A key no section knows is refused with the section and the key named.

use crate::api::ApiSection;
use orbit_accounting::AccountingSection;
use orbit_audit::AuditSection;
use orbit_gc::GcSection;
use orbit_payments::PaymentsConfig;
use orbit_repair::RepairSection;
use orbit_replica::ReplicaConfig;
use orbit_satellite_api::StorageSection;
use orbit_satellite_model::reputation::ReputationConfig;
use orbit_segment_loop::LoopSection;
use orbit_uptime::UptimeSection;
use orbit_version::VersionSection;
use serde::{Deserialize, Serialize};

/// The service sections, what a process builder takes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Services {
    /// `[api]`.
    pub api: ApiSection,
    /// `[storage]`, when the process serves the storage network API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSection>,
    /// `[payments]`, when the satellite takes payments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<PaymentsConfig>,
    /// `[loop]`, the segment loop's settings (defaults when absent).
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub segment_loop: Option<LoopSection>,
    /// `[repair]`, the repair workers' settings (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairSection>,
    /// `[uptime]`, node contacts (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<UptimeSection>,
    /// `[audit]`, the audit sampling and workers (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSection>,
    /// `[gc]`, garbage-collection filters and their sending (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcSection>,
    /// `[reputation]`, how audits and contacts move node scores (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reputation: Option<ReputationConfig>,
    /// `[accounting]`, rollups, payout rates and prices (defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounting: Option<AccountingSection>,
    /// `[console]`, the users' console, served by the `api` process when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<orbit_console::ConsoleSection>,
    /// `[private_api]`, the operators' HTTP API (its token is required to serve it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_api: Option<crate::private_api::PrivateApiSection>,
    /// `[version]`, the version check and server (defaults when absent: no server,
    /// so processes refuse to start until one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionSection>,
}

/// The whole file.
#[derive(Clone, Debug)]
pub struct SatelliteConfig {
    /// The replica's settings and table.
    pub replica: ReplicaConfig,
    /// The service sections.
    pub services: Services,
}

fn section<T: for<'de> Deserialize<'de>>(
    table: &mut toml::Table,
    name: &str,
) -> anyhow::Result<Option<T>> {
    match table.remove(name) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => T::deserialize(t)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("[{name}]: {}", e.message())),
        Some(_) => anyhow::bail!("{name} must be a section: [{name}]"),
    }
}

impl SatelliteConfig {
    /// Parses a configuration file's text (the replica settings are validated later,
    /// once command-line flags have overridden them).
    pub fn parse(text: &str) -> anyhow::Result<SatelliteConfig> {
        let mut table: toml::Table = text.parse()?;
        let services = Services {
            api: section(&mut table, "api")?.unwrap_or_default(),
            storage: section(&mut table, "storage")?,
            payments: section(&mut table, "payments")?,
            segment_loop: section(&mut table, "loop")?,
            repair: section(&mut table, "repair")?,
            uptime: section(&mut table, "uptime")?,
            audit: section(&mut table, "audit")?,
            gc: section(&mut table, "gc")?,
            reputation: section(&mut table, "reputation")?,
            accounting: section(&mut table, "accounting")?,
            version: section(&mut table, "version")?,
            private_api: section(&mut table, "private_api")?,
            console: section(&mut table, "console")?,
        };
        let replica = ReplicaConfig::deserialize(table)
            .map_err(|e| anyhow::anyhow!("replica settings (top level): {}", e.message()))?;
        Ok(SatelliteConfig { replica, services })
    }

    /// The effective configuration as TOML, every default filled in; the cluster
    /// token and the private API's token, secrets, are shown as `<redacted>`.
    pub fn show(&self) -> anyhow::Result<String> {
        let mut replica = self.replica.clone();
        replica.token = "<redacted>".into();
        let mut table = toml::Table::try_from(&replica)?;
        let rows = table.remove("replica");
        let mut services = self.services.clone();
        if let Some(p) = services.private_api.as_mut() {
            p.token = "<redacted>".into();
        }
        for (k, v) in toml::Table::try_from(&services)? {
            table.insert(k, v);
        }
        // Rows last: `[[replica]]` tables after the sections read as the file does.
        if let Some(rows) = rows {
            table.insert("replica".into(), rows);
        }
        Ok(toml::to_string(&table)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &str = "[[replica]]\nid = 1\nstore_name = \"n1\"\nclient_url = \"http://127.0.0.1:2379\"\npeer_url = \"http://127.0.0.1:2380\"\nstore_node = true\n";

    #[test]
    fn unknown_keys_are_refused_naming_section_and_key() {
        let base = format!(
            "replica_id = 1\nmode = \"fixed\"\n[storage]\ndistinct_networks = false\n{ROWS}"
        );
        let c = SatelliteConfig::parse(&base).unwrap();
        assert_eq!(
            c.services.storage.as_ref().map(|s| s.distinct_networks),
            Some(false)
        );
        assert_eq!(c.services.api, ApiSection::default());
        for (text, want) in [
            (
                format!("replica_id = 1\nmode = \"fixed\"\n[storage]\nonline_windw_s = 5\n{ROWS}"),
                ["[storage]", "online_windw_s"],
            ),
            (
                format!("replica_id = 1\nmode = \"fixed\"\n[api]\nadress = \"x\"\n{ROWS}"),
                ["[api]", "adress"],
            ),
            (
                format!("replica_id = 1\nmode = \"fixed\"\nheartbeat = 5\n{ROWS}"),
                ["top level", "heartbeat"],
            ),
        ] {
            let e = SatelliteConfig::parse(&text).unwrap_err().to_string();
            assert!(want.iter().all(|w| e.contains(w)), "{e}");
        }
    }

    #[test]
    fn show_fills_defaults_redacts_the_token_and_reads_back() {
        let text = format!(
            "replica_id = 1\nmode = \"fixed\"\ntoken = \"s3cret\"\n[storage]\n[private_api]\ntoken = \"adm1n\"\n{ROWS}"
        );
        let c = SatelliteConfig::parse(&text).unwrap();
        let shown = c.show().unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("adm1n"), "{shown}");
        assert!(shown.contains("[private_api]"), "{shown}");
        assert!(shown.contains("sweep_interval_s = 600"), "{shown}");
        assert!(shown.contains("addr = \"127.0.0.1:7778\""), "{shown}");
        let back = SatelliteConfig::parse(&shown).unwrap();
        assert_eq!(back.services.storage, c.services.storage);
        assert_eq!(back.replica.replicas, c.replica.replicas);
    }
}
