//! What `check` gathers from each subsystem besides the documents: pages owed and paid, locks abandoned, SSM's
//! version limit, replication incidents (closing the quiet ones), and replication coverage.

use crate::check::Finding;
use domain::notification::Severity;
use dr_failover::Engine;
use dr_ports::documents;
use dr_ports::lock::{self, FAILOVER_LOCK_KEY};
use dr_ports::{Clock, ControlBucket, Notifier, Parameter, ParameterStore};
use futures_util::future::join_all;

/// Pages owed by executions (their topic failed): `check` pays them; what still cannot go out is critical.
pub(crate) async fn owed_page_findings<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Vec<Finding> {
    match engine.pay_owed_pages(RECENT_SCAN).await {
        Ok((paid, still)) => {
            let mut out = Vec::new();
            if !paid.is_empty() {
                out.push(Finding {
                    id: "pages-paid".into(),
                    severity: Severity::Info,
                    what: format!("sent {} owed page(s): {}", paid.len(), paid.join(", ")),
                    action: "none".into(),
                });
            }
            if !still.is_empty() {
                out.push(Finding {
                    id: "pages-owed".into(),
                    severity: Severity::Critical,
                    what: format!("{} page(s) cannot be published: {}", still.len(), still.join(", ")),
                    action:
                        "check the paging topic (its key, its policy) and the alarms on the paging path; the next check retries"
                            .into(),
                });
            }
            out
        }
        Err(e) => vec![Finding {
            id: "pages-owed-unreadable".into(),
            severity: Severity::Warning,
            what: format!("could not read the execution records for owed pages: {e}"),
            action: "check the control bucket".into(),
        }],
    }
}

/// A lock nobody works under (stopped, or past its lease) whose execution has ended or never got a record (an
/// attempt that died right after taking it): `check` releases it, conditionally, so the next failover does not
/// wait for a lease.
pub(crate) async fn abandoned_lock_findings<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Vec<Finding> {
    let now = engine.clock.now();
    // Judged by the store's time at the read; release_abandoned judges again at its own read.
    let (held, held_at) = match lock::read_at(&engine.bucket, FAILOVER_LOCK_KEY, now).await {
        Ok(Some((doc, _, at))) => (doc, at),
        _ => return Vec::new(),
    };
    if !(held.state == lock::LockState::Stopped || held.expired(held_at)) {
        return Vec::new();
    }
    let ended = match dr_failover::record::read(&engine.bucket, &held.execution_id).await {
        Ok(Some(r)) => r.record.state.is_terminal(),
        Ok(None) => true,
        Err(_) => false,
    };
    if !ended {
        return Vec::new();
    }
    match lock::release_abandoned(&engine.bucket, FAILOVER_LOCK_KEY, Some(&held.execution_id), now).await {
        Ok(Some(doc)) => vec![Finding {
            id: "lock-abandoned".into(),
            severity: Severity::Info,
            what: format!(
                "released the lock left by execution {} (attempt {}, {:?}), which has ended",
                doc.execution_id, doc.attempt_id, doc.state
            ),
            action: "none".into(),
        }],
        _ => Vec::new(),
    }
}

/// SSM keeps 100 versions of `{prefix}/active` and every promotion labels one: warn from version 90.
pub(crate) async fn version_findings<P: ParameterStore, B, N, C>(engine: &Engine<P, B, N, C>) -> Vec<Finding> {
    let name = engine.settings.prefix.child(documents::ACTIVE);
    match engine.params.get_one(&name).await {
        Ok(Some(p)) if p.version >= dr_failover::VERSIONS_WARNING => vec![Finding {
            id: "active-versions".into(),
            severity: Severity::Warning,
            what: format!(
                "{name} is at version {}: SSM keeps {} versions and refuses a new one while the oldest carries a label",
                p.version,
                dr_failover::SSM_VERSIONS_KEPT
            ),
            action: "none needed: promotions unlabel the oldest versions first (the reports keep the history)".into(),
        }],
        _ => Vec::new(),
    }
}

/// The data plane's part of `check`: closes replication incidents that have gone quiet (with their `OK`
/// page), and reports the open ones as RPO risk. Warnings at most: `replication-failure` pages them itself.
pub(crate) async fn replication_findings<P, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let quiet = engine.settings.replication_quiet;
    let env = &engine.settings.environment;
    match dr_replication::close_quiet_incidents(
        &engine.bucket,
        &engine.notifier,
        &engine.clock,
        env,
        &engine.settings.region,
        quiet,
    )
    .await
    {
        Ok(closed) if !closed.is_empty() => out.push(Finding {
            id: "replication-closed".into(),
            severity: Severity::Info,
            what: format!("closed quiet replication incidents: {}", closed.join(", ")),
            action: "none".into(),
        }),
        Ok(_) => {}
        Err(e) => out.push(Finding {
            id: "replication-close".into(),
            severity: Severity::Warning,
            what: format!("could not close quiet replication incidents: {e}"),
            action: "the next check retries".into(),
        }),
    }
    match dr_replication::open_incidents(&engine.bucket).await {
        Ok(open) => out.extend(open.iter().map(|i| Finding {
            id: format!("replication-{}", i.id),
            severity: if i.highest_severity == Severity::Info { Severity::Info } else { Severity::Warning },
            what: format!(
                "RPO risk: replication incident {} ({:?}), {} objects failed to replicate from {}",
                i.id, i.state, i.total_failed, i.source_bucket
            ),
            action: format!(
                "see {} and re-drive with the manifests under {}",
                domain::layout::incident(&i.id),
                domain::layout::MANIFESTS_PREFIX
            ),
        })),
        Err(e) => out.push(Finding {
            id: "replication-read".into(),
            severity: Severity::Warning,
            what: format!("could not read the replication incidents: {e}"),
            action: "check the control bucket".into(),
        }),
    }
    out
}

/// How many of the newest execution records `status` and `check` read (resumable executions, owed pages).
pub(crate) const RECENT_SCAN: usize = 50;

/// `check`'s coverage findings: every snapshot source's [`dr_ports::snapshot::SnapshotSource::findings`] (the Delta
/// source judges coverage), over the DR parameters `check` read (`{prefix}/data-plane` among them).
pub(crate) async fn coverage_findings<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    tree: &[Parameter],
) -> Vec<Finding> {
    let ctx = dr_ports::snapshot::SnapshotContext {
        tree,
        prefix: engine.settings.prefix.as_str(),
        now: engine.clock.now(),
        patient: true,
    };
    join_all(engine.sources.iter().map(|s| s.findings(&ctx))).await.into_iter().flatten().collect()
}
