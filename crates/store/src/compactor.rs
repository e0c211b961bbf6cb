//! Automatic compaction, etcd's way: the leader decides how far history may go and
//! commits a `Compact` through the log like any other write, so every member drops
//! the same history at the same point.
//!
//! - `periodic` with a retention `R`: the leader samples the revision every `R / 10`
//!   and compacts to the newest sample at least `R` old (etcd 3.4's periodic mode).
//! - `revision` with a retention `N`: every check interval (etcd: 5 minutes) it
//!   compacts to `revision - N`.
//!
//! Readers that must keep reading at one revision for a while (the satellite's segment
//! loop) pin it: a key under [`orbit_kv::PIN_PREFIX`] whose value is the revision, best
//! under a lease so a dead reader's pin goes with it. Automatic compaction never passes
//! the lowest pin; an explicit `Compact` (etcdctl compaction) does, as in etcd.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What automatic compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Never compacts by itself.
    Off,
    /// Keeps at least this much time of history.
    Periodic(Duration),
    /// Keeps at least this many revisions of history.
    Revision(i64),
}

/// orbit's default: an hour of history (enough for any watcher to resume after an
/// outage and for a segment-loop pass, which pins its revision anyway), and bounded
/// memory under heartbeat-like load. etcd's own default is off.
pub const DEFAULT_AUTO_COMPACTION: AutoCompaction =
    AutoCompaction::Periodic(Duration::from_secs(3600));

/// How often revision mode checks, as etcd.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

impl AutoCompaction {
    /// Parses etcd's `--auto-compaction-mode` and `--auto-compaction-retention`: in
    /// periodic mode a duration (`1h`, `30m`, `90s`, `1h30m`, or a bare number of
    /// hours), in revision mode a revision count; retention `0` turns it off.
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let d = match retention.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours * 3600),
                    Err(_) => parse_duration(retention).ok_or_else(|| {
                        format!(
                            "auto-compaction retention {retention:?} is not a duration such as 1h, 30m or 90s"
                        )
                    })?,
                };
                Ok(if d.is_zero() {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic(d)
                })
            }
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| {
                    format!("auto-compaction retention {retention:?} is not a revision count")
                })?;
                if n < 0 {
                    return Err("auto-compaction retention must not be negative".into());
                }
                Ok(if n == 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Revision(n)
                })
            }
            "off" | "" => Ok(AutoCompaction::Off),
            other => Err(format!(
                "auto-compaction mode must be periodic, revision or off, not {other:?}"
            )),
        }
    }
}

/// Go-style durations: numbers with `h`, `m`, `s` or `ms`, concatenated (`1h30m`).
fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            _ => return None,
        };
        total += unit.checked_mul(n as u32)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[derive(Default)]
struct Inner {
    /// The term this member leads in, if it does: samples start afresh with each term.
    term: Option<u64>,
    /// (when, revision) samples, oldest first.
    samples: VecDeque<(Instant, i64)>,
    last_check: Option<Instant>,
}

/// The leader's compaction decisions.
pub struct Compactor {
    mode: AutoCompaction,
    revision_check: Duration,
    inner: Mutex<Inner>,
}

impl Compactor {
    /// A compactor for `mode`; revision mode checks every `revision_check`.
    pub fn new(mode: AutoCompaction, revision_check: Duration) -> Compactor {
        Compactor {
            mode,
            revision_check,
            inner: Mutex::default(),
        }
    }

    /// Called on every chore tick with this member's leadership, the current and
    /// compacted revisions and the lowest pinned revision; returns the revision to
    /// compact to now, if any.
    pub fn tick(
        &self,
        leader_term: Option<u64>,
        revision: i64,
        compacted: i64,
        lowest_pin: Option<i64>,
        now: Instant,
    ) -> Option<i64> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.term != leader_term {
            *g = Inner {
                term: leader_term,
                ..Inner::default()
            };
        }
        leader_term?;
        let target = match self.mode {
            AutoCompaction::Off => return None,
            AutoCompaction::Periodic(retention) => {
                let every = (retention / 10).max(Duration::from_millis(10));
                if g.samples.back().is_none_or(|(t, _)| now - *t >= every) {
                    g.samples.push_back((now, revision));
                }
                // The newest sample at least `retention` old; older ones are done with.
                let mut target = None;
                while let Some(&(t, rev)) = g.samples.front() {
                    if now.saturating_duration_since(t) < retention {
                        break;
                    }
                    target = Some(rev);
                    g.samples.pop_front();
                }
                if let Some(rev) = target {
                    // Kept as the oldest sample: it may have to wait for a pin.
                    g.samples.push_front((now - retention, rev));
                }
                target?
            }
            AutoCompaction::Revision(keep) => {
                match g.last_check {
                    Some(t) if now - t < self.revision_check => return None,
                    None => {
                        // The first check comes one interval after leading starts.
                        g.last_check = Some(now);
                        return None;
                    }
                    _ => {}
                }
                g.last_check = Some(now);
                revision - keep
            }
        };
        let target = lowest_pin.map_or(target, |p| target.min(p));
        (target > compacted).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_flags() {
        let p = |m, r| AutoCompaction::parse(m, r).unwrap();
        assert_eq!(
            p("periodic", "1h"),
            AutoCompaction::Periodic(Duration::from_secs(3600))
        );
        assert_eq!(
            p("periodic", "2"),
            AutoCompaction::Periodic(Duration::from_secs(7200))
        );
        assert_eq!(
            p("periodic", "1h30m"),
            AutoCompaction::Periodic(Duration::from_secs(5400))
        );
        assert_eq!(
            p("periodic", "500ms"),
            AutoCompaction::Periodic(Duration::from_millis(500))
        );
        assert_eq!(p("periodic", "0"), AutoCompaction::Off);
        assert_eq!(p("revision", "1000"), AutoCompaction::Revision(1000));
        assert!(AutoCompaction::parse("periodic", "1x").is_err());
        assert!(AutoCompaction::parse("periodic", "h").is_err());
        assert!(AutoCompaction::parse("revision", "1h").is_err());
        assert!(AutoCompaction::parse("daily", "1").is_err());
    }

    #[test]
    fn periodic_compacts_to_a_revision_retention_old_and_only_on_the_leader() {
        let c = Compactor::new(
            AutoCompaction::Periodic(Duration::from_secs(10)),
            REVISION_CHECK_INTERVAL,
        );
        let t0 = Instant::now();
        assert_eq!(c.tick(None, 100, 0, None, t0), None);
        assert_eq!(c.tick(Some(1), 100, 0, None, t0), None);
        assert_eq!(
            c.tick(Some(1), 150, 0, None, t0 + Duration::from_secs(5)),
            None
        );
        // Ten seconds on: the sample taken at t0 is old enough.
        assert_eq!(
            c.tick(Some(1), 300, 0, None, t0 + Duration::from_secs(10)),
            Some(100)
        );
        // A pin holds it back, and the target waits for the pin to go.
        assert_eq!(
            c.tick(Some(1), 400, 100, Some(120), t0 + Duration::from_secs(16)),
            Some(120)
        );
        assert_eq!(
            c.tick(Some(1), 400, 120, Some(120), t0 + Duration::from_secs(17)),
            None
        );
        assert_eq!(
            c.tick(Some(1), 400, 120, None, t0 + Duration::from_secs(17)),
            Some(150)
        );
        // A follower decides nothing; a new term starts sampling afresh.
        assert_eq!(
            c.tick(None, 500, 150, None, t0 + Duration::from_secs(40)),
            None
        );
        assert_eq!(
            c.tick(Some(2), 500, 150, None, t0 + Duration::from_secs(41)),
            None
        );
    }

    #[test]
    fn revision_mode_keeps_its_count() {
        let c = Compactor::new(AutoCompaction::Revision(50), Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(c.tick(Some(1), 100, 0, None, t0), None);
        assert_eq!(
            c.tick(Some(1), 120, 0, None, t0 + Duration::from_millis(500)),
            None
        );
        assert_eq!(
            c.tick(Some(1), 130, 0, None, t0 + Duration::from_secs(1)),
            Some(80)
        );
        assert_eq!(
            c.tick(Some(1), 130, 80, None, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            c.tick(Some(1), 40, 0, None, t0 + Duration::from_secs(3)),
            None
        );
    }
}
