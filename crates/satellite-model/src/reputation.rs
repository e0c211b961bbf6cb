//! Node reputation: what audits and contacts say about a node, kept in its node record.
//!
//! Audit outcomes feed two beta-distribution scores, each a pair (α, β) aged by a
//! forgetting factor λ: a success makes α ← λα + w and β ← λβ, a failure α ← λα and
//! β ← λβ + w, and the score is α / (α + β). The *audit* score counts successes against
//! failures (missing pieces, wrong bytes, bad proofs); at or below
//! `disqualify_threshold` the node is disqualified for good. The *unknown* score
//! counts successes against answers that were neither (any other error); at or below
//! `suspend_threshold` the node is suspended (no new uploads, its pieces unhealthy)
//! until the score recovers. Offline and contained outcomes change neither score: a
//! node is never disqualified for being offline, and a timeout counts as a failure
//! only after the node fails its reverification several times (the audit process
//! decides that). The *online* score ages contact successes against failures the same
//! way and is reported, not acted on.
//!
//! A node is *vetted* once it has passed `vetting_audits` audits; until then it gets
//! only a small share of new uploads (see `SelectionConfig::new_node_percent`).

use serde::{Deserialize, Serialize};

/// The `[reputation]` section: how outcomes move scores. Storj's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Forgetting factor of the audit score.
    pub audit_lambda: f64,
    /// Weight of one audit.
    pub audit_weight: f64,
    /// α a new node's audit and unknown scores start with (β starts at 0).
    pub initial_alpha: f64,
    /// An audit score at or below this disqualifies.
    pub disqualify_threshold: f64,
    /// Forgetting factor of the unknown-outcome score.
    pub unknown_lambda: f64,
    /// An unknown-outcome score at or below this suspends.
    pub suspend_threshold: f64,
    /// Forgetting factor of the online score.
    pub online_lambda: f64,
    /// Audits a node must pass before it is vetted.
    pub vetting_audits: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            audit_lambda: 0.999,
            audit_weight: 1.0,
            initial_alpha: 1000.0,
            disqualify_threshold: 0.96,
            unknown_lambda: 0.95,
            suspend_threshold: 0.6,
            online_lambda: 0.999,
            vetting_audits: 100,
        }
    }
}

/// One beta-distribution score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Beta {
    /// Weight of successes.
    pub alpha: f64,
    /// Weight of failures.
    pub beta: f64,
}

impl Beta {
    /// A fresh score.
    pub fn new(alpha: f64) -> Beta {
        Beta { alpha, beta: 0.0 }
    }

    /// Whether it has seen nothing yet.
    fn empty(&self) -> bool {
        self.alpha + self.beta <= 0.0
    }

    /// α / (α + β); 1 for a score that has seen nothing.
    pub fn score(&self) -> f64 {
        let total = self.alpha + self.beta;
        if total <= 0.0 {
            1.0
        } else {
            self.alpha / total
        }
    }

    /// Ages the score by `lambda` and adds `weight` on the side `success` names; an
    /// empty score starts at `alpha0` first.
    pub fn update(&mut self, success: bool, lambda: f64, weight: f64, alpha0: f64) {
        if self.empty() {
            *self = Beta::new(alpha0);
        }
        self.alpha *= lambda;
        self.beta *= lambda;
        if success {
            self.alpha += weight;
        } else {
            self.beta += weight;
        }
    }
}

/// What one audit of one node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The node proved its piece.
    Success,
    /// The piece is missing, its bytes are wrong or its proof is bad.
    Failure,
    /// The node could not be reached.
    Offline,
    /// The node was reached but did not answer in time: it must prove that piece later.
    Contained,
    /// Any other error.
    Unknown,
}

/// Audit outcomes so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Successes.
    pub success: u64,
    /// Failures.
    pub failure: u64,
    /// Offline.
    pub offline: u64,
    /// Contained (timeouts).
    pub contained: u64,
    /// Unknown.
    pub unknown: u64,
}

impl AuditCounts {
    /// Every audit counted.
    pub fn total(&self) -> u64 {
        self.success + self.failure + self.offline + self.contained + self.unknown
    }
}

/// A node's reputation. Its scores start empty (0, 0: a score of 1) and take the
/// configured α₀ at their first update, so the process that creates a node record
/// need not know the reputation settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reputation {
    /// Successes against failures.
    pub audit: Beta,
    /// Successes against unknown outcomes.
    pub unknown: Beta,
    /// Contact successes against failures.
    pub online: Beta,
    /// Outcomes so far.
    pub audits: AuditCounts,
    /// Unix time (s) it was vetted (0: not yet).
    pub vetted_at: u64,
    /// Unix time (s) it was suspended (0: not suspended).
    pub suspended_at: u64,
    /// Unix time (s) it was disqualified (0: not disqualified).
    pub disqualified_at: u64,
    /// Why it was disqualified.
    pub disqualified_reason: String,
}

/// A change of a node's standing, logged when it happens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "event")]
pub enum ReputationEvent {
    /// Disqualified for good.
    Disqualified {
        /// Why.
        reason: String,
    },
    /// Suspended.
    Suspended {
        /// Why.
        reason: String,
    },
    /// No longer suspended.
    Unsuspended,
    /// Passed enough audits to get a full share of uploads.
    Vetted,
}

impl Reputation {
    /// Whether it is suspended.
    pub fn suspended(&self) -> bool {
        self.suspended_at != 0
    }

    /// Whether it is vetted.
    pub fn vetted(&self) -> bool {
        self.vetted_at != 0
    }

    /// Applies one audit outcome at `now`; returns the changes of standing it caused.
    /// A disqualified node's scores no longer move.
    pub fn apply(
        &mut self,
        outcome: AuditOutcome,
        config: &ReputationConfig,
        now: u64,
    ) -> Vec<ReputationEvent> {
        let mut events = Vec::new();
        let c = &mut self.audits;
        match outcome {
            AuditOutcome::Success => c.success += 1,
            AuditOutcome::Failure => c.failure += 1,
            AuditOutcome::Offline => c.offline += 1,
            AuditOutcome::Contained => c.contained += 1,
            AuditOutcome::Unknown => c.unknown += 1,
        }
        if self.disqualified_at != 0 {
            return events;
        }
        let (w, a0, now) = (config.audit_weight, config.initial_alpha, now.max(1));
        match outcome {
            AuditOutcome::Success => {
                self.audit.update(true, config.audit_lambda, w, a0);
                self.unknown.update(true, config.unknown_lambda, w, a0);
            }
            AuditOutcome::Failure => self.audit.update(false, config.audit_lambda, w, a0),
            AuditOutcome::Unknown => self.unknown.update(false, config.unknown_lambda, w, a0),
            AuditOutcome::Offline | AuditOutcome::Contained => {}
        }
        let audit = self.audit.score();
        if audit <= config.disqualify_threshold {
            self.disqualified_at = now;
            self.disqualified_reason = format!(
                "audit score {audit:.4} at or below {} after {} failed audits",
                config.disqualify_threshold, self.audits.failure
            );
            events.push(ReputationEvent::Disqualified {
                reason: self.disqualified_reason.clone(),
            });
        }
        let unknown = self.unknown.score();
        if !self.suspended() && unknown <= config.suspend_threshold {
            self.suspended_at = now;
            events.push(ReputationEvent::Suspended {
                reason: format!(
                    "unknown-outcome score {unknown:.4} at or below {} after {} unknown audits",
                    config.suspend_threshold, self.audits.unknown
                ),
            });
        } else if self.suspended() && unknown > config.suspend_threshold {
            self.suspended_at = 0;
            events.push(ReputationEvent::Unsuspended);
        }
        if !self.vetted() && self.audits.success >= config.vetting_audits {
            self.vetted_at = now;
            events.push(ReputationEvent::Vetted);
        }
        events
    }

    /// Records one contact attempt in the online score.
    pub fn contact(&mut self, ok: bool, config: &ReputationConfig) {
        self.online
            .update(ok, config.online_lambda, 1.0, config.initial_alpha);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storjs_defaults_disqualify_after_41_straight_failures_and_never_for_offline() {
        let c = ReputationConfig::default();
        let mut r = Reputation::default();
        for _ in 0..10_000 {
            assert!(r.apply(AuditOutcome::Offline, &c, 5).is_empty());
            assert!(r.apply(AuditOutcome::Contained, &c, 5).is_empty());
        }
        assert_eq!(r.audit.score(), 1.0);
        assert_eq!(
            r.audit,
            Beta::default(),
            "offline and contained never touch it"
        );
        let mut failed = 0;
        while r.disqualified_at == 0 {
            let ev = r.apply(AuditOutcome::Failure, &c, 7);
            failed += 1;
            assert!(failed < 100, "never disqualified");
            if r.disqualified_at != 0 {
                assert!(
                    matches!(&ev[..], [ReputationEvent::Disqualified { reason }] if reason.contains("0.96"))
                );
            }
        }
        // α + β stays 1000 (the weight is 1, α₀ = 1000): the score is 0.999^n.
        assert_eq!(failed, 41);
        assert_eq!(r.disqualified_at, 7);
        // Permanent: successes no longer move it.
        let before = r.audit;
        r.apply(AuditOutcome::Success, &c, 8);
        assert_eq!(r.audit, before);
        assert_eq!(r.audits.success, 1);
    }

    #[test]
    fn unknown_outcomes_suspend_and_successes_lift_it_and_vetting_counts_successes() {
        let c = ReputationConfig {
            vetting_audits: 3,
            ..ReputationConfig::default()
        };
        let mut r = Reputation::default();
        let mut events = Vec::new();
        for _ in 0..3 {
            events.extend(r.apply(AuditOutcome::Success, &c, 1));
        }
        assert_eq!(events, vec![ReputationEvent::Vetted]);
        let mut n = 0;
        while !r.suspended() {
            r.apply(AuditOutcome::Unknown, &c, 2);
            n += 1;
            assert!(n < 200);
        }
        assert!((60..80).contains(&n), "suspended after {n} unknowns");
        assert_eq!(r.disqualified_at, 0, "unknown outcomes never disqualify");
        let mut lifted = false;
        for _ in 0..200 {
            if r.apply(AuditOutcome::Success, &c, 3) == vec![ReputationEvent::Unsuspended] {
                lifted = true;
                break;
            }
        }
        assert!(lifted && !r.suspended());
    }
}
