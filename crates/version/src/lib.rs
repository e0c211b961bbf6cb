//! Version checks (seed 003: "the process cannot start unless it is running the
//! correct version").
//!
//! `satellite run version` serves [`Rules`] from its `[version.server]` section: per
//! process name, the lowest version allowed and the one suggested. Every satellite
//! process checks in with its name and version before it starts ([`check`]) and stops
//! with a message naming the versions when refused or when no server answers — it
//! fails closed. `[version] unchecked = true` is the one, explicit, development
//! setting that starts without a server. While running, a process re-checks every
//! `interval_s` and reports the verdict in its status ([`Checker`]).

use orbit_protocol::version_pb as pb;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This build's version, as processes check in with it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One process's allowed range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The lowest version allowed to run.
    pub minimum: String,
    /// The version to run (at least the minimum).
    pub suggested: String,
}

/// The `[version.server]` section: where the server listens and its rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Listen address.
    pub addr: String,
    /// Where to serve the server's Prometheus metrics (`GET /metrics`); unset: nowhere.
    pub debug_addr: Option<String>,
    /// The rule of processes without their own (none: such processes are refused).
    pub default: Option<Rule>,
    /// Rules by process name (`api`, `loop`, …, and `storagenode`).
    pub processes: BTreeMap<String, Rule>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            addr: "127.0.0.1:7770".into(),
            debug_addr: None,
            default: Some(Rule {
                minimum: VERSION.into(),
                suggested: VERSION.into(),
            }),
            processes: BTreeMap::new(),
        }
    }
}

/// The `[version]` section: how a process checks its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersionSection {
    /// The version server's URL (`http://host:port`); empty: none configured.
    pub url: String,
    /// Seconds between re-checks while running.
    pub interval_s: u64,
    /// Seconds to wait for the server's answer.
    pub timeout_s: u64,
    /// Development only: start without asking a version server. Never in
    /// production: it is how a process of the wrong version would start.
    pub unchecked: bool,
    /// What `satellite run version` serves.
    pub server: ServerSection,
}

impl Default for VersionSection {
    fn default() -> Self {
        VersionSection {
            url: String::new(),
            interval_s: 300,
            timeout_s: 5,
            unchecked: false,
            server: ServerSection::default(),
        }
    }
}

/// Why a process may not run.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The rules themselves are wrong.
    #[error("version rules: {0}")]
    Rules(String),
    /// The server refused this version.
    #[error("{process} {version} is not allowed to run: {message}")]
    Refused {
        /// The process.
        process: String,
        /// Its version.
        version: String,
        /// The server's reason (it names the versions allowed).
        message: String,
    },
    /// No server configured, none answered, or the answer was unusable.
    #[error("version check of {process} {version} against {url:?}: {why}; a process does not start unless a version server allows it (development only: [version] unchecked = true)")]
    Unreachable {
        /// The process.
        process: String,
        /// Its version.
        version: String,
        /// The server asked.
        url: String,
        /// What went wrong.
        why: String,
    },
}

fn parse(v: &str, what: &str) -> Result<Version, VersionError> {
    Version::parse(v).map_err(|e| VersionError::Rules(format!("{what} {v:?}: {e}")))
}

/// The server's rules, checked.
#[derive(Clone, Debug)]
pub struct Rules {
    default: Option<(Rule, Version)>,
    processes: BTreeMap<String, (Rule, Version)>,
}

impl Rules {
    /// Checks `section`: every version parses, no suggestion below its minimum.
    pub fn new(section: &ServerSection) -> Result<Rules, VersionError> {
        let check = |name: &str, r: &Rule| -> Result<(Rule, Version), VersionError> {
            let min = parse(&r.minimum, &format!("{name}: minimum"))?;
            let sug = parse(&r.suggested, &format!("{name}: suggested"))?;
            if sug < min {
                return Err(VersionError::Rules(format!(
                    "{name}: suggested {sug} is below the minimum {min}"
                )));
            }
            Ok((r.clone(), min))
        };
        Ok(Rules {
            default: section
                .default
                .as_ref()
                .map(|r| check("default", r))
                .transpose()?,
            processes: section
                .processes
                .iter()
                .map(|(n, r)| Ok((n.clone(), check(n, r)?)))
                .collect::<Result<_, VersionError>>()?,
        })
    }

    /// Whether `process` may run `version`.
    pub fn judge(&self, process: &str, version: &str) -> pb::Verdict {
        let rules = self
            .processes
            .iter()
            .map(|(n, (r, _))| (n.clone(), rule_msg(r)))
            .collect();
        let Some((rule, min)) = self.processes.get(process).or(self.default.as_ref()) else {
            return pb::Verdict {
                allowed: false,
                rule: None,
                message: format!("the version server has no rule for process {process:?}"),
                rules,
            };
        };
        let (allowed, message) = match Version::parse(version) {
            Err(e) => (false, format!("version {version:?} does not parse: {e}")),
            Ok(v) if v < *min => (
                false,
                format!(
                    "{process} must run at least {}, suggested {}; this is {v}",
                    rule.minimum, rule.suggested
                ),
            ),
            Ok(v) => (
                true,
                format!(
                    "{process} {v} allowed (minimum {}, suggested {})",
                    rule.minimum, rule.suggested
                ),
            ),
        };
        pb::Verdict {
            allowed,
            rule: Some(rule_msg(rule)),
            message,
            rules,
        }
    }
}

fn rule_msg(r: &Rule) -> pb::Rule {
    pb::Rule {
        minimum: r.minimum.clone(),
        suggested: r.suggested.clone(),
    }
}

/// The version server's gRPC service.
pub struct VersionServer {
    rules: Rules,
}

impl VersionServer {
    /// A server of `rules`.
    pub fn new(rules: Rules) -> VersionServer {
        VersionServer { rules }
    }

    /// As a tonic service.
    pub fn service(self) -> pb::versions_server::VersionsServer<VersionServer> {
        pb::versions_server::VersionsServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::versions_server::Versions for VersionServer {
    async fn check_in(
        &self,
        r: tonic::Request<pb::CheckInRequest>,
    ) -> Result<tonic::Response<pb::Verdict>, tonic::Status> {
        let r = r.into_inner();
        let v = self.rules.judge(&r.process, &r.version);
        tracing::info!(
            process = %r.process,
            version = %r.version,
            instance = %r.instance,
            allowed = v.allowed,
            "check-in"
        );
        Ok(tonic::Response::new(v))
    }
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Checked {
    /// The process.
    pub process: String,
    /// Its version.
    pub version: String,
    /// Whether it may run (true when unchecked).
    pub allowed: bool,
    /// Not checked: `[version] unchecked`.
    pub unchecked: bool,
    /// The rule applied.
    pub minimum: String,
    /// The version suggested.
    pub suggested: String,
    /// The server's words, or why no answer came.
    pub message: String,
    /// Unix time (s) of the check.
    pub at: u64,
    /// Every rule the server has, by process name.
    #[serde(skip)]
    pub rules: BTreeMap<String, Rule>,
}

impl Checked {
    /// The minimum the server sets for `process`, if it sets one.
    pub fn minimum_of(&self, process: &str) -> Option<Version> {
        self.rules
            .get(process)
            .and_then(|r| Version::parse(&r.minimum).ok())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Asks the server in `section` whether `process` may run `version`: Ok only when
/// it says so, or when `unchecked`.
pub async fn check(
    section: &VersionSection,
    process: &str,
    version: &str,
    instance: &str,
) -> Result<Checked, VersionError> {
    let unreachable = |why: String| VersionError::Unreachable {
        process: process.into(),
        version: version.into(),
        url: section.url.clone(),
        why,
    };
    if section.url.is_empty() {
        let why = "no [version] url is configured";
        return match section.unchecked {
            true => Ok(unchecked_after(process, version, why.into())),
            false => Err(unreachable(why.into())),
        };
    }
    let timeout = Duration::from_secs(section.timeout_s.max(1));
    let ask = async {
        let endpoint = tonic::transport::Endpoint::from_shared(section.url.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        pb::versions_client::VersionsClient::new(channel)
            .check_in(pb::CheckInRequest {
                process: process.into(),
                version: version.into(),
                instance: instance.into(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.message().to_string())
    };
    let verdict = match tokio::time::timeout(timeout * 2, ask).await {
        Ok(Ok(v)) => v,
        Ok(Err(why)) if section.unchecked => return Ok(unchecked_after(process, version, why)),
        Ok(Err(why)) => return Err(unreachable(why)),
        Err(_) if section.unchecked => {
            return Ok(unchecked_after(process, version, "no answer".into()))
        }
        Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"))),
    };
    let rule = verdict.rule.clone().unwrap_or_default();
    if !verdict.allowed {
        return Err(VersionError::Refused {
            process: process.into(),
            version: version.into(),
            message: verdict.message,
        });
    }
    Ok(Checked {
        process: process.into(),
        version: version.into(),
        allowed: true,
        unchecked: false,
        minimum: rule.minimum,
        suggested: rule.suggested,
        message: verdict.message,
        at: unix_now(),
        rules: verdict
            .rules
            .into_iter()
            .map(|(n, r)| {
                (
                    n,
                    Rule {
                        minimum: r.minimum,
                        suggested: r.suggested,
                    },
                )
            })
            .collect(),
    })
}

fn unchecked_after(process: &str, version: &str, why: String) -> Checked {
    Checked {
        process: process.into(),
        version: version.into(),
        allowed: true,
        unchecked: true,
        message: format!("not checked ([version] unchecked = true): {why}"),
        at: unix_now(),
        ..Checked::default()
    }
}

/// The last verdict of a running process, re-checked periodically.
#[derive(Clone)]
pub struct Checker {
    section: VersionSection,
    process: String,
    instance: String,
    last: Arc<Mutex<Checked>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

/// What runs on every verdict the server gives.
type Hook = Box<dyn Fn(&Checked) + Send + Sync>;

impl Checker {
    /// A checker that starts from the verdict `first` (the check made at start).
    pub fn new(section: VersionSection, instance: &str, first: Checked) -> Checker {
        Checker {
            section,
            process: first.process.clone(),
            instance: instance.into(),
            last: Arc::new(Mutex::new(first)),
            hooks: Arc::default(),
        }
    }

    /// Runs `f` on every verdict a re-check gets from the server.
    pub fn on_verdict(&self, f: impl Fn(&Checked) + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// Checks again; a refusal or no answer is kept as the verdict (the process
    /// runs on: it was allowed at start) and returned as the error.
    pub async fn recheck(&self) -> Result<Checked, String> {
        let r = check(&self.section, &self.process, VERSION, &self.instance).await;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(c) => {
                *last = c.clone();
                drop(last);
                for h in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    h(&c);
                }
                Ok(c)
            }
            Err(e) => {
                last.allowed = false;
                last.message = e.to_string();
                last.at = unix_now();
                Err(e.to_string())
            }
        }
    }

    /// The last verdict.
    pub fn last(&self) -> Checked {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Seconds between re-checks.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.section.interval_s.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(default: Option<(&str, &str)>, procs: &[(&str, &str, &str)]) -> ServerSection {
        ServerSection {
            addr: String::new(),
            debug_addr: None,
            default: default.map(|(m, s)| Rule {
                minimum: m.into(),
                suggested: s.into(),
            }),
            processes: procs
                .iter()
                .map(|(n, m, s)| {
                    (
                        n.to_string(),
                        Rule {
                            minimum: m.to_string(),
                            suggested: s.to_string(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn rules_judge_by_process_with_a_default_and_refuse_what_they_do_not_know() {
        let r = Rules::new(&section(
            Some(("0.1.0", "0.1.0")),
            &[("repair", "0.2.0", "0.3.0")],
        ))
        .unwrap();
        assert!(r.judge("api", "0.1.0").allowed);
        let v = r.judge("repair", "0.1.5");
        assert!(!v.allowed);
        assert!(
            v.message.contains("at least 0.2.0") && v.message.contains("suggested 0.3.0"),
            "{}",
            v.message
        );
        assert!(r.judge("repair", "0.2.0").allowed);
        assert!(r.judge("repair", "1.0.0-rc.1").allowed);
        assert!(!r.judge("repair", "garbage").allowed);
        assert_eq!(v.rules["repair"].minimum, "0.2.0");
        let strict = Rules::new(&section(None, &[("api", "0.1.0", "0.1.0")])).unwrap();
        assert!(!strict.judge("loop", "9.9.9").allowed);
        assert!(Rules::new(&section(Some(("x", "0.1.0")), &[])).is_err());
        assert!(Rules::new(&section(Some(("0.2.0", "0.1.0")), &[])).is_err());
    }

    #[tokio::test]
    async fn no_server_fails_closed_unless_explicitly_unchecked() {
        let mut s = VersionSection::default();
        let e = check(&s, "api", "0.1.0", "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("unchecked = true"), "{e}");
        s.url = "http://127.0.0.1:1".into();
        s.timeout_s = 1;
        let e = check(&s, "api", "0.1.0", "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("api 0.1.0") && e.contains("127.0.0.1:1"), "{e}");
        s.unchecked = true;
        let c = check(&s, "api", "0.1.0", "t").await.unwrap();
        assert!(c.allowed && c.unchecked);
    }
}
