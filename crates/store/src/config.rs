//! Configuration of a store member.

use crate::StoreError;
use std::path::PathBuf;

/// etcd's progress notification interval: 10 minutes.
pub const DEFAULT_WATCH_PROGRESS_MS: u64 = 600_000;
/// etcd's default backend quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// Log entries between snapshots by default.
pub const DEFAULT_SNAPSHOT_ENTRIES: u64 = 10_000;

/// Whether a member creates a new cluster or joins an existing one (etcd's
/// `--initial-cluster-state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    /// Form a new cluster from the initial cluster list.
    #[default]
    New,
    /// Join a cluster that already has this member added (by MemberAdd).
    Existing,
}

impl std::str::FromStr for ClusterState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "new" => Ok(ClusterState::New),
            "existing" => Ok(ClusterState::Existing),
            other => Err(format!(
                "cluster state must be new or existing, not {other:?}"
            )),
        }
    }
}

/// Configuration of one store member.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Human-readable member name, unique in the cluster.
    pub name: String,
    /// Where the member keeps its log, snapshot and identity.
    pub data_dir: PathBuf,
    /// URL clients reach it on (etcd API), e.g. `http://127.0.0.1:2379`. Port 0 picks one.
    pub client_url: String,
    /// URL peers reach it on (Raft), e.g. `http://127.0.0.1:2380`.
    pub peer_url: String,
    /// Every initial member: name and peer URL.
    pub initial_cluster: Vec<(String, String)>,
    /// Form a new cluster or join an existing one.
    pub initial_cluster_state: ClusterState,
    /// Cluster token: keeps members of different clusters apart.
    pub token: String,
    /// Raft heartbeat interval, milliseconds (etcd: 100).
    pub heartbeat_ms: u64,
    /// Raft election timeout, milliseconds (etcd: 1000).
    pub election_ms: u64,
    /// Most bytes of key-value data accepted (etcd's backend quota, default 2 GiB); 0: none.
    pub quota_bytes: u64,
    /// Log entries between snapshots.
    pub snapshot_entries: u64,
    /// How often an idle watch that asked for progress notifications gets one, ms
    /// (etcd: 10 minutes).
    pub watch_progress_ms: u64,
    /// The id this member takes when its data dir is fresh; `None` derives it from the
    /// token, name and peer URL (new cluster) or asks the cluster (existing). Set when a
    /// cluster may be created more than once under one name, so ids are never reused.
    pub member_id: Option<u64>,
    /// Automatic compaction (etcd's `--auto-compaction-mode` and `-retention`).
    pub auto_compaction: crate::compactor::AutoCompaction,
    /// How often revision-mode compaction checks, ms (etcd: 5 minutes).
    pub compaction_check_ms: u64,
    /// TLS of the client and peer ports (etcd's `--cert-file` and the rest).
    pub tls: orbit_tls::StoreTls,
    /// How long an auth token lasts, seconds (etcd's `--auth-token-ttl`).
    pub auth_token_ttl_s: u64,
}

impl StoreConfig {
    /// A single-member cluster in `data_dir` with etcd's default timings and limits;
    /// other configurations start from it and set what differs.
    pub fn single(
        name: &str,
        data_dir: impl Into<PathBuf>,
        client_url: &str,
        peer_url: &str,
    ) -> Self {
        Self {
            name: name.to_string(),
            data_dir: data_dir.into(),
            client_url: client_url.to_string(),
            peer_url: peer_url.to_string(),
            initial_cluster: vec![(name.to_string(), peer_url.to_string())],
            initial_cluster_state: ClusterState::New,
            token: "orbit".to_string(),
            heartbeat_ms: 100,
            election_ms: 1000,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            snapshot_entries: DEFAULT_SNAPSHOT_ENTRIES,
            watch_progress_ms: DEFAULT_WATCH_PROGRESS_MS,
            member_id: None,
            auto_compaction: crate::compactor::DEFAULT_AUTO_COMPACTION,
            compaction_check_ms: crate::compactor::REVISION_CHECK_INTERVAL.as_millis() as u64,
            tls: orbit_tls::StoreTls::default(),
            auth_token_ttl_s: crate::auth::DEFAULT_TOKEN_TTL_S,
        }
    }

    /// Checks the configuration, saying what to fix.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.name.is_empty() {
            return Err(StoreError::Config("the member name is empty".into()));
        }
        url_addr(&self.client_url)?;
        url_addr(&self.peer_url)?;
        self.tls
            .validate()
            .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
        scheme_fits(
            &self.client_url,
            self.tls.client_tls(),
            "client",
            "cert_file",
        )?;
        scheme_fits(
            &self.peer_url,
            self.tls.peer_tls(),
            "peer",
            "peer_cert_file",
        )?;
        let mut names = std::collections::BTreeSet::new();
        for (name, url) in &self.initial_cluster {
            url_addr(url)?;
            scheme_fits(url, self.tls.peer_tls(), "peer", "peer_cert_file")?;
            if !names.insert(name) {
                return Err(StoreError::Config(format!(
                    "member name {name:?} appears twice in the initial cluster"
                )));
            }
        }
        match self.initial_cluster.iter().find(|(n, _)| *n == self.name) {
            None => Err(StoreError::Config(format!(
                "the initial cluster does not list this member ({:?}); add {}={}",
                self.name, self.name, self.peer_url
            ))),
            Some((_, url)) if *url != self.peer_url => Err(StoreError::Config(format!(
                "the initial cluster gives {:?} the peer URL {url}, but this member's peer URL is {}",
                self.name, self.peer_url
            ))),
            Some(_) => {
                if self.member_id == Some(0) {
                    return Err(StoreError::Config("member id 0 is reserved".into()));
                }
                if self.member_id.is_some()
                    && self.initial_cluster_state == ClusterState::New
                    && self.initial_cluster.len() > 1
                {
                    return Err(StoreError::Config(
                        "a given member id can only create a one-member cluster".into(),
                    ));
                }
                if self.heartbeat_ms == 0 || self.election_ms <= self.heartbeat_ms * 2 {
                    return Err(StoreError::Config(
                        "the election timeout must be more than twice the heartbeat interval".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Parses `name1=url1,name2=url2` (etcd's `--initial-cluster`).
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, StoreError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                StoreError::Config(format!(
                    "initial cluster entry {part:?} is not name=peerURL"
                ))
            })?;
            url_addr(url.trim())?;
            Ok((name.trim().to_string(), url.trim().to_string()))
        })
        .collect()
}

/// Whether `url`'s scheme fits the port's TLS: `https://` exactly when it serves TLS.
fn scheme_fits(url: &str, tls: bool, port: &str, flag: &str) -> Result<(), StoreError> {
    match (url.starts_with("https://"), tls) {
        (true, false) => Err(StoreError::Config(format!(
            "{port} URL {url} is https:// but no certificate is given ({flag})"
        ))),
        (false, true) => Err(StoreError::Config(format!(
            "{port} URL {url} is http:// but the {port} port serves TLS ({flag}); use https://"
        ))),
        _ => Ok(()),
    }
}

/// The `host:port` a `http://host:port` or `https://host:port` URL names.
pub fn url_addr(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            StoreError::Config(format!("URL {url:?} must start with http:// or https://"))
        })?;
    let hostport = rest.trim_end_matches('/');
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(hostport.to_string())
        }
        _ => Err(StoreError::Config(format!(
            "URL {url:?} must be http(s)://host:port"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_initial_cluster() {
        let c = parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1], ("b".into(), "http://127.0.0.1:2".into()));
        assert!(parse_initial_cluster("a:http://x:1").is_err());
        assert!(parse_initial_cluster("a=127.0.0.1:1").is_err());
    }

    #[test]
    fn a_url_scheme_must_fit_the_ports_tls() {
        let c = StoreConfig::single("a", "/tmp/x", "https://127.0.0.1:1", "http://127.0.0.1:2");
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("https:// but no certificate") && e.contains("cert_file"),
            "{e}"
        );
        let c = StoreConfig::single("a", "/tmp/x", "http://127.0.0.1:1", "https://127.0.0.1:2");
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("peer URL") && e.contains("peer_cert_file"),
            "{e}"
        );
        assert!(url_addr("https://127.0.0.1:1").is_ok());
        assert!(url_addr("ftp://127.0.0.1:1").is_err());
    }

    #[test]
    fn refuses_member_missing_from_its_cluster() {
        let mut c = StoreConfig::single("a", "/tmp/x", "http://127.0.0.1:1", "http://127.0.0.1:2");
        assert!(c.validate().is_ok());
        c.initial_cluster = vec![("b".into(), "http://127.0.0.1:3".into())];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("does not list this member"), "{e}");
    }
}
