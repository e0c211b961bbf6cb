//! A replica's configuration: one TOML file, checked at start with messages that say
//! what to fix.

use orbit_store::config::url_addr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How the replica gets its store cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Use the given client URLs: orbit members started by hand, or a real etcd.
    External,
    /// The replica table says which replicas run a store member; those form one cluster.
    Fixed,
    /// Replicas grow and shrink the cluster themselves (seed 000's incremental mode).
    Incremental,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "external" => Ok(Mode::External),
            "fixed" => Ok(Mode::Fixed),
            "incremental" => Ok(Mode::Incremental),
            other => Err(format!(
                "mode must be external, fixed or incremental, not {other:?}"
            )),
        }
    }
}

/// One row of the replica table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRow {
    /// Replica id, unique.
    pub id: u64,
    /// Name of the store member this replica runs (or would run).
    pub store_name: String,
    /// Client URL of that member (for `external`: a member or etcd endpoint).
    pub client_url: String,
    /// Peer URL of that member (unused in `external` mode).
    #[serde(default)]
    pub peer_url: String,
    /// In `fixed` mode: whether this replica runs a store member.
    #[serde(default)]
    pub store_node: bool,
}

/// A replica's configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This replica's id; must be in the table.
    pub replica_id: u64,
    /// How the store cluster is formed.
    pub mode: Mode,
    /// Cluster token: replicas of one service share it.
    #[serde(default = "default_token")]
    pub token: String,
    /// Where this replica keeps its store member's data.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Address of the status and health endpoint.
    #[serde(default = "default_status_addr")]
    pub status_addr: String,
    /// Raft heartbeat interval, ms.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Raft election timeout, ms.
    #[serde(default = "default_election_ms")]
    pub election_ms: u64,
    /// How often the replica heartbeats its row in the store, ms.
    #[serde(default = "default_replica_heartbeat_ms")]
    pub replica_heartbeat_ms: u64,
    /// Seconds without a heartbeat after which a replica is dead (its lease's TTL).
    #[serde(default = "default_replica_ttl_s")]
    pub replica_ttl_s: i64,
    /// Mode incremental: the replica that may create the cluster (default: the lowest
    /// id). Every other replica only ever joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_replica: Option<u64>,
    /// Mode incremental: let this replica create the cluster although it is not the
    /// designated one — for when that one is gone for good. Never on two replicas.
    #[serde(default)]
    pub bootstrap: bool,
    /// A replica without a row of its own: it never runs a store member and uses the
    /// rows' members as a client (workers scaled by an autoscaler, whose ids come and
    /// go). Its id must not be in the table.
    #[serde(default)]
    pub client_only: bool,
    /// Mode incremental: most store members to run (rounded down to odd).
    #[serde(default = "default_max_store_nodes")]
    pub max_store_nodes: usize,
    /// Mode incremental: how long a new member may stay a learner before it is removed
    /// and the next replica tried, ms.
    #[serde(default = "default_learner_timeout_ms")]
    pub learner_timeout_ms: u64,
    /// Mode incremental: how long a member whose replica is dead must also fail its
    /// health check before it is removed from the cluster, ms.
    #[serde(default = "default_member_dead_ms")]
    pub member_dead_ms: u64,
    /// Automatic compaction of the store member this replica runs: `periodic`,
    /// `revision` or `off` (as etcd's `--auto-compaction-mode`).
    #[serde(default = "default_auto_compaction_mode")]
    pub auto_compaction_mode: String,
    /// What it keeps: a duration (`1h`) in periodic mode, a count in revision mode.
    #[serde(default = "default_auto_compaction_retention")]
    pub auto_compaction_retention: String,
    /// TLS of the store: what this replica's member serves on its client and peer
    /// ports, and what the replica presents and trusts as a store client (etcd's flag
    /// names: `cert_file`, `trusted_ca_file`, `client_cert_auth`, `peer_cert_file`, …).
    #[serde(default, skip_serializing_if = "is_default")]
    pub store_tls: orbit_tls::StoreTls,
    /// The store user this replica's client authenticates as where the store has auth
    /// enabled; its password comes from `ORBIT_STORE_PASSWORD`, never from this file.
    /// A member the replica runs itself is reached in-process and needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_user: Option<String>,
    /// The replica table.
    #[serde(default, rename = "replica")]
    pub replicas: Vec<ReplicaRow>,
}

impl ReplicaConfig {
    /// The store user and password this replica's client presents, if any.
    pub fn store_credentials(&self) -> Result<Option<orbit_kv::Credentials>, ConfigError> {
        self.store_user
            .as_deref()
            .map(|u| {
                orbit_kv::Credentials::parse(u, std::env::var("ORBIT_STORE_PASSWORD").ok())
                    .map_err(|e| ConfigError(e.to_string()))
            })
            .transpose()
    }
}

fn is_default(t: &orbit_tls::StoreTls) -> bool {
    *t == orbit_tls::StoreTls::default()
}

fn default_token() -> String {
    "orbit".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("replica.orbit")
}
fn default_status_addr() -> String {
    "127.0.0.1:7777".into()
}
fn default_heartbeat_ms() -> u64 {
    100
}
fn default_election_ms() -> u64 {
    1000
}
fn default_replica_heartbeat_ms() -> u64 {
    1000
}
fn default_replica_ttl_s() -> i64 {
    5
}
fn default_max_store_nodes() -> usize {
    5
}
fn default_learner_timeout_ms() -> u64 {
    30_000
}
fn default_member_dead_ms() -> u64 {
    10_000
}
fn default_auto_compaction_mode() -> String {
    "periodic".into()
}
fn default_auto_compaction_retention() -> String {
    "1h".into()
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ReplicaConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<ReplicaConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<ReplicaConfig, ConfigError> {
        let config = Self::parse_unchecked(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a configuration without checking it (for overrides applied before
    /// [`ReplicaConfig::validate`]).
    pub fn parse_unchecked(text: &str) -> Result<ReplicaConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// This replica's row; none for a client-only replica.
    pub fn me(&self) -> Option<&ReplicaRow> {
        self.replicas.iter().find(|r| r.id == self.replica_id)
    }

    /// Whether this replica may run a store member: it has a row.
    pub fn may_run_member(&self) -> bool {
        !self.client_only && self.me().is_some()
    }

    /// The replica that may create the cluster in mode incremental.
    pub fn bootstrapper(&self) -> u64 {
        self.bootstrap_replica
            .unwrap_or_else(|| self.replicas.iter().map(|r| r.id).min().unwrap_or(0))
    }

    /// The rows of the replicas that run a store member (fixed mode).
    pub fn store_rows(&self) -> impl Iterator<Item = &ReplicaRow> {
        self.replicas.iter().filter(|r| r.store_node)
    }

    /// The automatic compaction its store member runs with.
    pub fn auto_compaction(&self) -> Result<orbit_store::AutoCompaction, ConfigError> {
        orbit_store::AutoCompaction::parse(
            &self.auto_compaction_mode,
            &self.auto_compaction_retention,
        )
        .map_err(ConfigError)
    }

    /// Checks the table, saying what to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        self.auto_compaction()?;
        if self.replicas.is_empty() {
            return err("the replica table is empty: add a [[replica]] row per replica".into());
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for r in &self.replicas {
            if !ids.insert(r.id) {
                return err(format!(
                    "replica id {} appears twice in the table; ids must be unique",
                    r.id
                ));
            }
            if !names.insert(&r.store_name) {
                return err(format!(
                    "store_name {:?} appears twice in the table; names must be unique",
                    r.store_name
                ));
            }
            url_addr(&r.client_url)
                .map_err(|e| ConfigError(format!("replica {}: client_url: {e}", r.id)))?;
            let tls = &self.store_tls;
            // A client reaches https:// members with the trusted CA; members serve
            // https:// with a certificate.
            let client_tls =
                tls.trusted_ca_file.is_some() && (self.mode == Mode::External || tls.client_tls());
            if r.client_url.starts_with("https://") != client_tls {
                return err(format!(
                    "replica {}: client_url {} does not fit store_tls: https:// exactly when {}",
                    r.id,
                    r.client_url,
                    if self.mode == Mode::External {
                        "trusted_ca_file is set"
                    } else {
                        "cert_file, key_file and trusted_ca_file are set"
                    }
                ));
            }
            if self.mode != Mode::External {
                url_addr(&r.peer_url)
                    .map_err(|e| ConfigError(format!("replica {}: peer_url: {e}", r.id)))?;
                if r.peer_url.starts_with("https://") != tls.peer_tls() {
                    return err(format!(
                        "replica {}: peer_url {} does not fit store_tls: https:// exactly when peer_cert_file is set",
                        r.id, r.peer_url
                    ));
                }
            }
        }
        match (ids.contains(&self.replica_id), self.client_only) {
            (false, false) => {
                return err(format!(
                    "replica_id {} is not in the replica table; add its row, fix the id, or set client_only = true for a replica that never runs a store member",
                    self.replica_id
                ))
            }
            (true, true) => {
                return err(format!(
                    "replica_id {} is client_only but has a row in the table; give it an id of its own",
                    self.replica_id
                ))
            }
            _ => {}
        }
        if let Some(b) = self.bootstrap_replica {
            if !ids.contains(&b) {
                return err(format!(
                    "bootstrap_replica {b} is not in the replica table; name one of its ids"
                ));
            }
        }
        if self.mode == Mode::Fixed && self.store_rows().next().is_none() {
            return err("mode fixed needs at least one row with store_node = true".into());
        }
        if self.replica_ttl_s < 2
            || (self.replica_ttl_s as u64) * 1000 <= 2 * self.replica_heartbeat_ms
        {
            return err(
                "replica_ttl_s must be at least 2 and more than two replica heartbeats".into(),
            );
        }
        self.store_tls
            .validate()
            .map_err(|e| ConfigError(format!("store_tls: {e}")))?;
        if let Some(u) = &self.store_user {
            if u.is_empty() || u.contains(':') {
                return err(format!(
                    "store_user {u:?}: a user name only; its password goes in ORBIT_STORE_PASSWORD"
                ));
            }
        }
        if self.heartbeat_ms == 0 || self.election_ms <= 2 * self.heartbeat_ms {
            return err("election_ms must be more than twice heartbeat_ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
replica_id = 2
mode = "fixed"
[[replica]]
id = 1
store_name = "n1"
client_url = "http://127.0.0.1:2379"
peer_url = "http://127.0.0.1:2380"
store_node = true
[[replica]]
id = 2
store_name = "n2"
client_url = "http://127.0.0.1:2381"
peer_url = "http://127.0.0.1:2382"
"#;

    #[test]
    fn a_good_table_parses_with_defaults() {
        let c = ReplicaConfig::parse(GOOD).unwrap();
        assert_eq!(c.mode, Mode::Fixed);
        assert_eq!(c.me().unwrap().store_name, "n2");
        assert_eq!(c.store_rows().count(), 1);
        assert_eq!(c.token, "orbit");
        assert_eq!(c.election_ms, 1000);
    }

    #[test]
    fn https_rows_need_store_tls() {
        let https = GOOD.replace("\"http://", "\"https://");
        let e = ReplicaConfig::parse(&https).unwrap_err().0;
        assert!(
            e.contains("replica 1: client_url") && e.contains("does not fit store_tls"),
            "{e}"
        );
        // External mode: a client needs only the CA to reach https:// members.
        let external = format!(
            "{}\n[store_tls]\ntrusted_ca_file = \"/nonexistent/ca.pem\"\n",
            https.replace("mode = \"fixed\"", "mode = \"external\"")
        );
        let e = ReplicaConfig::parse(&external).unwrap_err().0;
        // The URLs fit; the missing CA file is what is wrong.
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn wrong_tables_are_refused_with_what_to_fix() {
        let dup = GOOD.replace("id = 2\nstore_name", "id = 1\nstore_name");
        let e = ReplicaConfig::parse(&dup).unwrap_err().0;
        assert!(e.contains("appears twice"), "{e}");
        let bad_url = GOOD.replace("http://127.0.0.1:2381", "127.0.0.1:2381");
        let e = ReplicaConfig::parse(&bad_url).unwrap_err().0;
        assert!(
            e.contains("replica 2: client_url") && e.contains("http://"),
            "{e}"
        );
        let missing = GOOD.replace("replica_id = 2", "replica_id = 9");
        let e = ReplicaConfig::parse(&missing).unwrap_err().0;
        assert!(
            e.contains("replica_id 9 is not in the replica table"),
            "{e}"
        );
        let no_nodes = GOOD.replace("store_node = true", "store_node = false");
        let e = ReplicaConfig::parse(&no_nodes).unwrap_err().0;
        assert!(e.contains("store_node = true"), "{e}");
        let unknown = format!("{GOOD}\n[[replica]]\nid = 3\nstore_name = \"n3\"\nclient_url = \"http://h:1\"\npeer_url = \"http://h:2\"\ncolour = 1\n");
        assert!(ReplicaConfig::parse(&unknown).is_err());
        let bad_boot = GOOD.replace(
            "mode = \"fixed\"",
            "mode = \"fixed\"\nbootstrap_replica = 7",
        );
        let e = ReplicaConfig::parse(&bad_boot).unwrap_err().0;
        assert!(
            e.contains("bootstrap_replica 7 is not in the replica table"),
            "{e}"
        );
    }

    #[test]
    fn the_lowest_id_bootstraps_unless_one_is_named() {
        let c = ReplicaConfig::parse(GOOD).unwrap();
        assert_eq!(c.bootstrapper(), 1);
        let named = GOOD.replace(
            "mode = \"fixed\"",
            "mode = \"fixed\"\nbootstrap_replica = 2",
        );
        assert_eq!(ReplicaConfig::parse(&named).unwrap().bootstrapper(), 2);
    }
}
