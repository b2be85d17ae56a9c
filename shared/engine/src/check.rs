//! `check`: a readiness evaluation that finds what would make a failover fail, before it is needed.
//!
//! Findings carry a stable id and a severity. Critical findings page once, when they appear or change, and
//! resolve (`OK`) when they go away; the last state is kept in `checks/state.json`.

use domain::notification::{self, Envelope, Page, PageState, Severity};
use domain::policy::PolicyMode;
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_failover::Engine;
use dr_failover::response::{CheckAnswer, CommandResponse, Details, FindingCounts, Outcome};
use dr_ports::documents::{self, Doc};
use dr_ports::error::StoreError;
use dr_ports::lock::{self, FAILOVER_LOCK_KEY, LockState};
use dr_ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore, WriteCondition};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Where the last check's findings are kept (to page once per finding).
pub const STATE_KEY: &str = domain::layout::CHECK_STATE;

pub use dr_ports::finding::Finding;

fn finding(id: &str, severity: Severity, what: impl Into<String>, action: impl Into<String>) -> Finding {
    Finding { id: id.into(), severity, what: what.into(), action: action.into() }
}

/// The pure part: findings from the documents and the lock.
pub fn document_findings(docs: &documents::DrDocuments, lock: Option<&lock::LockDoc>, now: time::OffsetDateTime) -> Vec<Finding> {
    let mut out = site_findings(docs);
    out.extend(active_finding(docs));
    out.extend(policy_finding(docs));
    if let Some(p) = docs.data_plane.problem() {
        out.push(finding("data-plane", Severity::Warning, p, "fix {prefix}/data-plane: snapshots cannot judge the replicas"));
    }
    out.extend(lock.map(|l| lock_finding(l, now)));
    out
}

/// Each site document that is not valid (the secondary's is critical: a failover goes toward it).
fn site_findings(docs: &documents::DrDocuments) -> Vec<Finding> {
    let mut out = Vec::new();
    for site in SiteName::ALL {
        if let Some(p) = docs.site(site).problem() {
            let sev = if site == SiteName::Secondary { Severity::Critical } else { Severity::Warning };
            out.push(finding(
                &format!("site-{site}"),
                sev,
                p,
                format!("fix sites/{site}: a failover toward it would be refused"),
            ));
        }
    }
    out
}

/// An active document that is not valid, or that no longer matches its site's document.
fn active_finding(docs: &documents::DrDocuments) -> Option<Finding> {
    let Some(active) = docs.active.valid() else {
        return Some(finding(
            "active",
            Severity::Critical,
            docs.active.problem().unwrap_or_default(),
            "consumers cannot read the live config: create {prefix}/active from a site document plus \"site\"",
        ));
    };
    let site_doc = docs.site(active.site).valid()?;
    (site_doc.document() != active.config.document()).then(|| {
        finding(
            "active-drift",
            Severity::Warning,
            format!("the active config (site {}) differs from sites/{}", active.site, active.site),
            "a site document changed after promotion: re-promote (failover/failback) or restore the site document",
        )
    })
}

/// A policy that is absent, invalid, or automatic without alarms.
fn policy_finding(docs: &documents::DrDocuments) -> Option<Finding> {
    match &docs.policy {
        None => Some(finding(
            "policy",
            Severity::Info,
            "no policy parameter: approval mode applies",
            "create {prefix}/policy to choose a mode",
        )),
        Some(Doc::Valid { value, .. }) => (value.mode == PolicyMode::Auto && value.failover_alarms.is_empty()).then(|| {
            finding(
                "policy",
                Severity::Warning,
                "mode is auto but failover_alarms is empty",
                "list the health alarms that may fail over",
            )
        }),
        Some(other) => Some(finding(
            "policy",
            Severity::Critical,
            other.problem().unwrap_or_default(),
            "fix {prefix}/policy: while it is invalid no alarm can fail over automatically",
        )),
    }
}

/// What the failover lock's holder means for a failover now.
fn lock_finding(l: &lock::LockDoc, now: time::OffsetDateTime) -> Finding {
    match l.state {
        _ if l.expired(now) => finding(
            "lock",
            Severity::Warning,
            format!("the failover lock of {} expired at {} and was not released", l.execution_id, l.lease_expires_at),
            format!("the next trigger takes it over; to clear it now: unlock {}", l.execution_id),
        ),
        LockState::AwaitingApproval => finding(
            "approval",
            Severity::Warning,
            format!("execution {} awaits approval until {}", l.execution_id, l.lease_expires_at),
            format!("approve {} or unlock it", l.execution_id),
        ),
        LockState::Stopped => finding(
            "lock",
            Severity::Critical,
            format!("execution {} stopped on an error and holds the lock", l.execution_id),
            format!("re-run its trigger to resume, or unlock {}", l.execution_id),
        ),
        LockState::Running => finding("lock", Severity::Info, format!("execution {} is running", l.execution_id), "none"),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckState {
    /// The critical findings whose `ALARM` went out (or may have: see `unconfirmed`), by id.
    paged: BTreeMap<String, Finding>,
    /// Findings whose `ALARM` publish failed or whose answer was lost: published again by the next check.
    #[serde(default)]
    unconfirmed: std::collections::BTreeSet<String>,
    /// Findings resolved while their `ALARM` was unconfirmed: another check may have been publishing it, so it
    /// may reach the pager after the `OK`; the next check sends the `OK` again (unless the finding is back).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    ok_again: std::collections::BTreeSet<String>,
}

/// Runs the check and pages new or changed critical findings (and resolves the ones that went away).
pub async fn check<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    docs: &documents::DrDocuments,
    extra: Vec<Finding>,
) -> Result<CommandResponse, StoreError> {
    let now = engine.clock.now();
    let probe_key = domain::layout::probe_lock(&domain::primitives::new_token());
    let probe_body = json!({ "probe": "check", "at": rfc3339(now) }).to_string().into_bytes();
    let (lock_state, bucket_probe, paging, chat) = tokio::join!(
        lock::read(&engine.bucket, FAILOVER_LOCK_KEY),
        engine.bucket.put(&probe_key, probe_body, "application/json", WriteCondition::IfAbsent),
        engine.notifier.probe(Channel::Paging),
        engine.notifier.probe(Channel::Chat),
    );
    let mut findings = document_findings(docs, lock_state.as_ref().ok().and_then(|l| l.as_ref().map(|(d, _)| d)), now);
    match bucket_probe {
        Ok(_) => {
            let _ = engine.bucket.delete(&probe_key).await;
        }
        Err(e) => findings.push(finding(
            "control-bucket",
            Severity::Critical,
            format!("the control bucket refused a conditional write: {e}"),
            "a failover cannot take its lock or record itself: check the bucket and the function's role",
        )),
    }
    if let Err(e) = lock_state {
        findings.push(finding(
            "lock-unreadable",
            Severity::Critical,
            e.to_string(),
            format!("inspect {}; unlock if needed", domain::layout::FAILOVER_LOCK),
        ));
    }
    match paging {
        Ok(true) => {}
        Ok(false) => {}
        Err(e) => findings.push(finding(
            "topic-paging",
            Severity::Critical,
            format!("the paging topic is not reachable: {e}"),
            "check the topic and the role",
        )),
    }
    match chat {
        Ok(true) => {}
        Ok(false) => findings.push(finding(
            "topic-chat",
            Severity::Info,
            "no chat topic configured",
            "set DR_CHAT_TOPIC_ARN to get step summaries in chat",
        )),
        Err(e) => findings.push(finding(
            "topic-chat",
            Severity::Warning,
            format!("the chat topic is not reachable: {e}"),
            "check the topic and the role",
        )),
    }
    findings.extend(extra);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));

    let paged = page_changes(engine, &findings, now).await;
    let count = |severity: Severity| findings.iter().filter(|f| f.severity == severity).count();
    let counts =
        FindingCounts { critical: count(Severity::Critical), warning: count(Severity::Warning), info: count(Severity::Info) };
    let ready = counts.critical == 0;
    let answer = CheckAnswer { command: "check".into(), ready, counts, findings, paged, dr_matrix: None, sync: None };
    Ok(CommandResponse {
        outcome: Outcome::Noop,
        active_site: docs.active.valid().map(|a| a.site),
        message: Some(if ready { "ready: no critical finding".into() } else { "NOT ready: critical findings".into() }),
        details: Details::Check(Box::new(answer)),
    })
}

/// Pages critical findings that are new or changed, resolves those that went away; returns what it paged.
///
/// The state is written before the pages go out (compare-and-swap on `checks/state.json`: two checks at once
/// page once), so that an `ALARM` whose answer was lost is known as paged and resolved later; one whose
/// publish failed is kept `unconfirmed` and published again by the next check.
async fn page_changes<P, B: ControlBucket, N: Notifier, C>(
    engine: &Engine<P, B, N, C>,
    findings: &[Finding],
    now: time::OffsetDateTime,
) -> Vec<String> {
    let (previous, etag): (CheckState, Option<String>) = match engine.bucket.get(STATE_KEY).await {
        Ok(Some(o)) => (serde_json::from_slice(&o.body).unwrap_or_default(), Some(o.etag)),
        Ok(None) => (CheckState::default(), None),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the check state; nothing paged this time");
            return Vec::new();
        }
    };
    let critical: BTreeMap<String, Finding> =
        findings.iter().filter(|f| f.severity == Severity::Critical).map(|f| (f.id.clone(), f.clone())).collect();
    let mut to_alarm = Vec::new();
    let mut state = CheckState::default();
    for (id, f) in &critical {
        let changed = previous.paged.get(id).is_none_or(|p| p.what != f.what);
        if changed || previous.unconfirmed.contains(id) {
            to_alarm.push((id.clone(), f.clone()));
            state.unconfirmed.insert(id.clone());
        }
        state.paged.insert(id.clone(), f.clone());
    }
    let to_resolve: Vec<String> = previous.paged.keys().filter(|id| !critical.contains_key(*id)).cloned().collect();
    // Until its OK is confirmed, a resolved finding stays in the state (and is resolved again next time).
    for id in &to_resolve {
        if let Some(f) = previous.paged.get(id) {
            state.paged.insert(id.clone(), f.clone());
        }
        if previous.unconfirmed.contains(id) {
            state.ok_again.insert(id.clone());
        }
    }
    // An earlier check's OK that an unconfirmed ALARM may have crossed: sent again (a finding back is paged anew).
    let again: Vec<String> =
        previous.ok_again.iter().filter(|id| !critical.contains_key(*id) && !to_resolve.contains(*id)).cloned().collect();
    state.ok_again.extend(again.iter().cloned());
    if to_alarm.is_empty() && to_resolve.is_empty() && again.is_empty() && previous.ok_again.is_empty() {
        return Vec::new();
    }
    let condition = |etag: Option<String>| etag.map_or(WriteCondition::IfAbsent, WriteCondition::IfMatch);
    let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
    let etag = match engine.bucket.put(STATE_KEY, body, "application/json", condition(etag)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "could not keep the check state (another check at once?); nothing paged this time");
            return Vec::new();
        }
    };
    let mut sent = Vec::new();
    for (id, f) in &to_alarm {
        let page = page_for(engine, id, PageState::Alarm, format!("{} Action: {}", f.what, f.action), now);
        if engine.notifier.publish(Channel::Paging, &page).await.is_ok() {
            sent.push(format!("ALARM {id}"));
            state.unconfirmed.remove(id);
        }
    }
    for id in &to_resolve {
        let page = page_for(engine, id, PageState::Ok, format!("check finding {id} is resolved"), now);
        if engine.notifier.publish(Channel::Paging, &page).await.is_ok() {
            sent.push(format!("OK {id}"));
            state.paged.remove(id);
        }
    }
    for id in &again {
        let why = format!("check finding {id} is resolved (again: an ALARM of it may have crossed its first OK)");
        if engine.notifier.publish(Channel::Paging, &page_for(engine, id, PageState::Ok, why, now)).await.is_ok() {
            sent.push(format!("OK {id}"));
            state.ok_again.remove(id);
        }
    }
    let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
    if let Err(e) = engine.bucket.put(STATE_KEY, body, "application/json", WriteCondition::IfMatch(etag)).await {
        tracing::warn!(error = %e, "could not record the pages of this check; the next check pages again");
    }
    sent
}

fn page_for<P, B, N, C>(
    engine: &Engine<P, B, N, C>,
    id: &str,
    state: PageState,
    reason: String,
    now: time::OffsetDateTime,
) -> dr_ports::OutgoingMessage {
    let env = &engine.settings.environment;
    notification::paging_message(&Page {
        envelope: Envelope {
            event_type: format!("check.{}", if state == PageState::Alarm { "critical" } else { "resolved" }),
            // One AlarmName's ALARM and OK carry the same severity: a pager subscription filtered on severity
            // must let the OK through, or the incident never resolves.
            severity: Severity::Critical,
            environment: env.clone(),
            incident_key: format!("dr-{env}-check-{id}"),
        },
        alarm_name: format!("DR {env} readiness {id}"),
        state,
        reason,
        description: format!("Databricks DR readiness check of environment {env}: finding {id}"),
        time: rfc3339(now),
        region: engine.settings.region.clone(),
        details: BTreeMap::new(),
    })
}
