//! The failover policy as pure functions: who may move the active site, when, and why not.

use domain::policy::{Policy, PolicyMode};
use domain::site::{ActiveConfig, SiteName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What an execution does: move to the secondary, return to the primary, or rehearse on a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionKind {
    /// Toward the secondary site.
    Failover,
    /// Back to the primary site (only ever asked by a human).
    Failback,
    /// The failover path on a copy of the parameters: nothing live changes.
    Drill,
}

impl ExecutionKind {
    /// The kind of a move toward `target`: failover to the secondary, failback to the primary.
    pub fn toward(target: SiteName) -> ExecutionKind {
        match target {
            SiteName::Secondary => ExecutionKind::Failover,
            SiteName::Primary => ExecutionKind::Failback,
        }
    }

    /// `failover`, `failback`, `drill`: the prefix of its messages' `event_type` and of its execution ids.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Failover => "failover",
            ExecutionKind::Failback => "failback",
            ExecutionKind::Drill => "drill",
        }
    }
}

impl std::fmt::Display for ExecutionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who started an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Initiator {
    /// A CloudWatch alarm (automatic).
    Alarm {
        /// The alarm's name.
        alarm_name: String,
    },
    /// A human command.
    Human {
        /// Who asked.
        requested_by: String,
    },
}

impl Initiator {
    /// Whether a human asked.
    pub fn is_human(&self) -> bool {
        matches!(self, Initiator::Human { .. })
    }
}

/// What the policy says to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run the failover now.
    Execute,
    /// Prepare it (snapshot, plan) and page for approval.
    AwaitApproval,
    /// Page on-call, change nothing.
    NotifyOnly,
    /// Do not move: the target is not ready, or the request is not allowed. Pages.
    Refuse,
    /// Nothing to do: the target is already active.
    Noop,
    /// Not a failover trigger (an alarm not in the policy, a transition that is not into ALARM).
    Ignore,
}

/// A decision with its reasons, recorded in the execution and the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The site the execution moves toward.
    pub target: SiteName,
    /// Why, in order of evaluation.
    pub reasons: Vec<String>,
    /// Policy rules a human overrode (recorded in the execution and the report).
    pub overrides: Vec<String>,
}

/// What the decision is made from.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    /// Who asks.
    pub initiator: &'a Initiator,
    /// The site to make active.
    pub target: SiteName,
    /// The live active document, if it is valid.
    pub active: Option<&'a ActiveConfig>,
    /// The policy in force, or why it is invalid.
    pub policy: Result<&'a Policy, String>,
    /// Why the target site's document is not usable, if it is not (the readiness gate).
    pub target_problem: Option<String>,
    /// The execution holding the failover lock (its lease not expired), if one does: a failback in flight when
    /// the primary's health alarm fires is paged, never a silent no-op.
    pub in_flight: Option<&'a str>,
    /// For an alarm: when it went `OK` after this `ALARM`, if it did (an `OK` handled first: deliveries are
    /// unordered). The `ALARM` is then over before it is handled.
    pub recovered_at: Option<OffsetDateTime>,
    /// Now.
    pub now: OffsetDateTime,
}

/// What an execution may still do once it holds the lock, judged on what is true now (the fence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The decision still holds: go on to the promotion.
    Proceed,
    /// `{prefix}/active` already names this execution: its promotion is live; only the steps after it remain.
    Promoted,
    /// The premise no longer holds: stand down without writing anything. The sentence says why.
    Superseded(String),
}

/// What the fence looks at.
#[derive(Debug, Clone)]
pub struct FenceInput<'a> {
    /// The execution holding the lock.
    pub execution_id: &'a str,
    /// The SSM version of `{prefix}/active` its decision rested on (`None`: the parameter was absent).
    pub decided_on_version: Option<i64>,
    /// Whether its record says it wrote `{prefix}/active` already.
    pub promoted: bool,
    /// The SSM version of `{prefix}/active` now (`None`: absent).
    pub active_version: Option<i64>,
    /// The decision made again with what is true now (the initiator is the approver once approved).
    pub now: DecisionInput<'a>,
}

/// The fence: an execution writes `{prefix}/active` only when the `active` its decision saw is still the live
/// one and the policy, applied again to what is true now, still says execute.
///
/// Rules, in order: an `active` that names this execution means its promotion is live (continue after it); a
/// record that says it promoted while `active` names another means a later execution moved it (never write it
/// back); an `active` whose version changed since the decision means another execution moved it (the decision
/// rests on a stale view); then the policy must still say execute (a policy switched to notify-only, an alarm
/// removed from `failover_alarms`, a cooldown, an invalid target all stand the execution down).
pub fn fence(input: &FenceInput<'_>) -> Fence {
    let names_us = input.now.active.and_then(|a| a.execution_id.as_deref()) == Some(input.execution_id);
    if names_us {
        return Fence::Promoted;
    }
    let by = |a: Option<&ActiveConfig>| match a.and_then(|a| a.execution_id.clone()) {
        Some(id) => format!("execution {id}"),
        None => "a hand edit".to_owned(),
    };
    if input.promoted {
        return Fence::Superseded(format!(
            "{{prefix}}/active was moved by {} (version {}) after this execution promoted: it is not written back",
            by(input.now.active),
            input.active_version.map_or_else(|| "absent".to_owned(), |v| v.to_string())
        ));
    }
    if input.active_version != input.decided_on_version {
        return Fence::Superseded(format!(
            "{{prefix}}/active moved since the decision (version {} -> {}, by {}): the decision rested on a stale view",
            input.decided_on_version.map_or_else(|| "absent".to_owned(), |v| v.to_string()),
            input.active_version.map_or_else(|| "absent".to_owned(), |v| v.to_string()),
            by(input.now.active)
        ));
    }
    let again = decide(&input.now);
    match again.action {
        Action::Execute => Fence::Proceed,
        other => {
            Fence::Superseded(format!("the policy, applied again under the lock, says {other:?}: {}", again.reasons.join("; ")))
        }
    }
}

/// Applies the policy.
///
/// Rules, in order: the readiness gate (an invalid target document is refused for everyone); an alarm must be
/// listed in `failover_alarms`; the target must differ from the active site; no automatic failback; then, for
/// alarms, the mode (`notify-only`, `approval`, `auto`) and the cooldown. A human may act in `notify-only`
/// mode and inside a cooldown: the override is recorded.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let target = input.target;
    let mut reasons = Vec::new();
    let overrides = Vec::new();
    let done = |action, reasons, overrides| Decision { action, target, reasons, overrides };

    if let Initiator::Alarm { alarm_name } = input.initiator {
        match &input.policy {
            Ok(p) if !p.failover_alarms.iter().any(|a| a == alarm_name) => {
                return done(
                    Action::Ignore,
                    vec![format!("alarm {alarm_name:?} is not in the policy's failover_alarms")],
                    vec![],
                );
            }
            _ => {}
        }
    }
    if let (Initiator::Alarm { alarm_name }, Some(ok)) = (input.initiator, input.recovered_at) {
        let ok = ok.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        reasons.push(format!("alarm {alarm_name:?} went OK at {ok}, after this ALARM: it is over before it is handled"));
        return done(Action::Noop, reasons, overrides);
    }
    if let Some(problem) = &input.target_problem {
        reasons.push(format!("readiness gate: the {target} site's config is not usable: {problem}"));
        return done(Action::Refuse, reasons, overrides);
    }
    match input.active {
        Some(active) if active.site == target => {
            reasons.push(format!(
                "the {target} site is already active (since {})",
                active.promoted_at.as_deref().unwrap_or("unknown")
            ));
            // The primary's alarm while a failback toward it is under way: the failback is about to land on a site
            // that reports unhealthy. CloudWatch will not notify again while the alarm stays in ALARM: page now.
            if let (Initiator::Alarm { alarm_name }, Some(failback)) =
                (input.initiator, input.in_flight.filter(|id| id.starts_with(ExecutionKind::Failback.as_str())))
            {
                reasons.push(format!(
                    "but {failback} is moving back to the primary while alarm {alarm_name:?} says the primary is \
                     unhealthy: a human decides whether to let it land, or cancel it"
                ));
                return done(Action::NotifyOnly, reasons, overrides);
            }
            return done(Action::Noop, reasons, overrides);
        }
        Some(active) => reasons.push(format!("active site is {}; target is {target}", active.site)),
        None => reasons.push("the active config is missing or invalid".to_owned()),
    }

    match input.initiator {
        Initiator::Human { requested_by } => human_decision(input, requested_by, reasons),
        Initiator::Alarm { alarm_name } => alarm_decision(input, alarm_name, reasons),
    }
}

/// A human's request past the gate: executed, with the policy's mode and cooldown recorded as overridden.
fn human_decision(input: &DecisionInput<'_>, requested_by: &str, mut reasons: Vec<String>) -> Decision {
    let mut overrides = Vec::new();
    match &input.policy {
        Ok(p) if p.mode == PolicyMode::NotifyOnly => {
            overrides.push(format!("policy mode is notify-only: overridden by {requested_by}"))
        }
        Ok(p) => {
            if let Some(c) = cooldown_left(input.active, p, input.now) {
                overrides
                    .push(format!("inside the cooldown ({c} min left of {}): overridden by {requested_by}", p.cooldown_minutes));
            }
        }
        Err(problem) => overrides.push(format!("the policy is invalid ({problem}): overridden by {requested_by}")),
    }
    reasons.push(format!("requested by {requested_by}"));
    Decision { action: Action::Execute, target: input.target, reasons, overrides }
}

/// A failover alarm past the gate: no automatic action without a readable active config, toward the primary,
/// with an invalid policy or inside the cooldown; otherwise what the policy's mode says.
fn alarm_decision(input: &DecisionInput<'_>, alarm_name: &str, mut reasons: Vec<String>) -> Decision {
    let done = |action, reasons| Decision { action, target: input.target, reasons, overrides: Vec::new() };
    reasons.push(format!("alarm {alarm_name:?} is a failover alarm"));
    if input.active.is_none() {
        reasons.push("without a readable active config no automatic action is taken: a human must decide".to_owned());
        return done(Action::NotifyOnly, reasons);
    }
    if input.target == SiteName::Primary {
        reasons.push("no automatic failback: after a failover only a human returns to the primary".to_owned());
        return done(Action::NotifyOnly, reasons);
    }
    let policy = match &input.policy {
        Ok(p) => p,
        Err(problem) => {
            reasons.push(format!("the policy is invalid ({problem}): no automatic action"));
            return done(Action::NotifyOnly, reasons);
        }
    };
    if let Some(left) = cooldown_left(input.active, policy, input.now) {
        reasons
            .push(format!("inside the cooldown: last promotion less than {} min ago ({left} min left)", policy.cooldown_minutes));
        return done(Action::NotifyOnly, reasons);
    }
    match policy.mode {
        PolicyMode::NotifyOnly => {
            reasons.push("policy mode is notify-only (kill switch)".to_owned());
            done(Action::NotifyOnly, reasons)
        }
        PolicyMode::Approval => {
            reasons.push("policy mode is approval: a human approves".to_owned());
            done(Action::AwaitApproval, reasons)
        }
        PolicyMode::Auto => {
            reasons.push("policy mode is auto".to_owned());
            done(Action::Execute, reasons)
        }
    }
}

/// Minutes left in the cooldown after the last promotion, if inside it. The last promotion time is the
/// active document's `promoted_at`, which every promotion writes in the same `PutParameter`.
pub fn cooldown_left(active: Option<&ActiveConfig>, policy: &Policy, now: OffsetDateTime) -> Option<i64> {
    let promoted = active?.promoted_at.as_deref()?;
    let promoted = OffsetDateTime::parse(promoted, &time::format_description::well_known::Rfc3339).ok()?;
    let elapsed = (now - promoted).whole_minutes();
    let cooldown = i64::from(policy.cooldown_minutes);
    (elapsed >= 0 && elapsed < cooldown).then_some(cooldown - elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::site::SiteConfig;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn active(site: SiteName, promoted_at: &str) -> ActiveConfig {
        ActiveConfig {
            site,
            execution_id: Some("bootstrap".into()),
            promoted_at: Some(promoted_at.into()),
            config: SiteConfig::parse("s", r#"{"workspace_url":"https://a.b","region":"us-east-1"}"#).unwrap(),
        }
    }

    fn policy(mode: PolicyMode) -> Policy {
        Policy { mode, failover_alarms: vec!["wh".into()], cooldown_minutes: 60, ..Policy::default() }
    }

    fn alarm(name: &str) -> Initiator {
        Initiator::Alarm { alarm_name: name.into() }
    }

    fn human() -> Initiator {
        Initiator::Human { requested_by: "oncall@example.com".into() }
    }

    fn run(initiator: &Initiator, target: SiteName, active: Option<&ActiveConfig>, policy: Result<&Policy, String>) -> Decision {
        decide(&DecisionInput {
            initiator,
            target,
            active,
            policy,
            target_problem: None,
            in_flight: None,
            recovered_at: None,
            now: NOW,
        })
    }

    const LONG_AGO: &str = "2026-01-01T00:00:00Z";

    fn fence_with(promoted: bool, decided: Option<i64>, now_version: Option<i64>, a: &ActiveConfig, p: &Policy) -> Fence {
        let initiator = alarm("wh");
        fence(&FenceInput {
            execution_id: "alarm-1",
            decided_on_version: decided,
            promoted,
            active_version: now_version,
            now: DecisionInput {
                initiator: &initiator,
                target: SiteName::Secondary,
                active: Some(a),
                policy: Ok(p),
                target_problem: None,
                in_flight: None,
                recovered_at: None,
                now: NOW,
            },
        })
    }

    #[test]
    fn the_fence_lets_a_decision_that_still_holds_proceed() {
        let a = active(SiteName::Primary, LONG_AGO);
        assert_eq!(fence_with(false, Some(1), Some(1), &a, &policy(PolicyMode::Auto)), Fence::Proceed);
    }

    #[test]
    fn the_fence_continues_a_live_promotion_of_this_execution() {
        let mut a = active(SiteName::Secondary, LONG_AGO);
        a.execution_id = Some("alarm-1".into());
        assert_eq!(fence_with(true, Some(1), Some(2), &a, &policy(PolicyMode::NotifyOnly)), Fence::Promoted);
    }

    #[test]
    fn the_fence_never_writes_back_over_a_later_execution() {
        let mut a = active(SiteName::Primary, LONG_AGO);
        a.execution_id = Some("failback-1".into());
        let f = fence_with(true, Some(1), Some(3), &a, &policy(PolicyMode::Auto));
        assert!(matches!(&f, Fence::Superseded(why) if why.contains("failback-1") && why.contains("not written back")), "{f:?}");
    }

    #[test]
    fn the_fence_stands_down_a_decision_on_a_stale_active() {
        let a = active(SiteName::Primary, LONG_AGO);
        let f = fence_with(false, Some(1), Some(2), &a, &policy(PolicyMode::Auto));
        assert!(matches!(&f, Fence::Superseded(why) if why.contains("1 -> 2")), "{f:?}");
    }

    #[test]
    fn the_fence_applies_the_policy_again() {
        let a = active(SiteName::Primary, LONG_AGO);
        let f = fence_with(false, Some(1), Some(1), &a, &policy(PolicyMode::NotifyOnly));
        assert!(matches!(&f, Fence::Superseded(why) if why.contains("NotifyOnly")), "{f:?}");
        let recent = active(SiteName::Primary, "2026-11-25T11:50:00Z");
        assert!(matches!(fence_with(false, Some(1), Some(1), &recent, &policy(PolicyMode::Auto)), Fence::Superseded(_)));
    }

    #[test]
    fn auto_mode_executes_a_listed_alarm() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        let d = run(&alarm("wh"), SiteName::Secondary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::Execute, "{d:?}");
        assert!(d.overrides.is_empty());
    }

    #[test]
    fn approval_mode_waits_for_a_human() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::Approval);
        assert_eq!(run(&alarm("wh"), SiteName::Secondary, Some(&a), Ok(&p)).action, Action::AwaitApproval);
    }

    #[test]
    fn notify_only_is_the_kill_switch_for_alarms() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::NotifyOnly);
        let d = run(&alarm("wh"), SiteName::Secondary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::NotifyOnly);
        assert!(d.reasons.iter().any(|r| r.contains("kill switch")));
    }

    #[test]
    fn only_listed_alarms_count() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        assert_eq!(run(&alarm("other"), SiteName::Secondary, Some(&a), Ok(&p)).action, Action::Ignore);
    }

    #[test]
    fn cooldown_blocks_alarms_but_not_humans() {
        let a = active(SiteName::Primary, "2026-11-25T11:30:00Z");
        let p = policy(PolicyMode::Auto);
        let d = run(&alarm("wh"), SiteName::Secondary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::NotifyOnly);
        assert!(d.reasons.iter().any(|r| r.contains("cooldown") && r.contains("30 min left")), "{d:?}");
        let d = run(&human(), SiteName::Secondary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::Execute);
        assert!(d.overrides[0].contains("cooldown"), "{d:?}");
    }

    #[test]
    fn humans_override_notify_only_and_it_is_recorded() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::NotifyOnly);
        let d = run(&human(), SiteName::Secondary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::Execute);
        assert!(d.overrides[0].contains("notify-only") && d.overrides[0].contains("oncall@example.com"));
    }

    #[test]
    fn the_target_must_differ_from_the_active_site() {
        let a = active(SiteName::Secondary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        assert_eq!(run(&human(), SiteName::Secondary, Some(&a), Ok(&p)).action, Action::Noop);
        assert_eq!(run(&alarm("wh"), SiteName::Secondary, Some(&a), Ok(&p)).action, Action::Noop);
    }

    #[test]
    fn no_automatic_failback() {
        let a = active(SiteName::Secondary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        let d = run(&alarm("wh"), SiteName::Primary, Some(&a), Ok(&p));
        assert_eq!(d.action, Action::NotifyOnly);
        assert!(d.reasons.iter().any(|r| r.contains("no automatic failback")));
        assert_eq!(run(&human(), SiteName::Primary, Some(&a), Ok(&p)).action, Action::Execute);
    }

    #[test]
    fn the_primarys_alarm_during_a_failback_is_paged_not_a_noop() {
        // The failback toward the primary holds the lock and has not promoted yet: the secondary is still active.
        let a = active(SiteName::Secondary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        let during = |in_flight| {
            decide(&DecisionInput {
                initiator: &alarm("wh"),
                target: SiteName::Secondary,
                active: Some(&a),
                policy: Ok(&p),
                target_problem: None,
                in_flight,
                recovered_at: None,
                now: NOW,
            })
        };
        let d = during(Some("failback-7f3a"));
        assert_eq!(d.action, Action::NotifyOnly, "{d:?}");
        assert!(d.reasons.iter().any(|r| r.contains("failback-7f3a is moving back to the primary")), "{d:?}");
        // No failback in flight (the secondary active after a failover, the primary still down): nothing new.
        assert_eq!(during(None).action, Action::Noop);
        assert_eq!(during(Some("alarm-0123")).action, Action::Noop);
    }

    #[test]
    fn the_readiness_gate_refuses_everyone() {
        let a = active(SiteName::Primary, LONG_AGO);
        let p = policy(PolicyMode::Auto);
        for who in [alarm("wh"), human()] {
            let d = decide(&DecisionInput {
                initiator: &who,
                target: SiteName::Secondary,
                active: Some(&a),
                policy: Ok(&p),
                target_problem: Some("missing `region`".into()),
                in_flight: None,
                recovered_at: None,
                now: NOW,
            });
            assert_eq!(d.action, Action::Refuse);
            assert!(d.reasons[0].contains("missing `region`"));
        }
    }

    #[test]
    fn an_invalid_policy_or_active_stops_automation_only() {
        let a = active(SiteName::Primary, LONG_AGO);
        let d = run(&alarm("wh"), SiteName::Secondary, Some(&a), Err("mode: unknown".into()));
        assert_eq!(d.action, Action::NotifyOnly);
        assert_eq!(run(&human(), SiteName::Secondary, Some(&a), Err("x".into())).action, Action::Execute);
        let p = policy(PolicyMode::Auto);
        assert_eq!(run(&alarm("wh"), SiteName::Secondary, None, Ok(&p)).action, Action::NotifyOnly);
        assert_eq!(run(&human(), SiteName::Secondary, None, Ok(&p)).action, Action::Execute);
    }

    #[test]
    fn cooldown_edges() {
        let p = policy(PolicyMode::Auto);
        assert_eq!(cooldown_left(Some(&active(SiteName::Primary, "2026-11-25T11:00:00Z")), &p, NOW), None);
        assert_eq!(cooldown_left(Some(&active(SiteName::Primary, "2026-11-25T11:00:01Z")), &p, NOW), Some(1));
        assert_eq!(cooldown_left(Some(&active(SiteName::Primary, "garbage")), &p, NOW), None);
        assert_eq!(cooldown_left(None, &p, NOW), None);
    }
}
