//! The quiet-close, the scheduled check's part: every incident quiet for the quiet period (no warning or critical
//! event received, lag not outstanding) is closed, with an `OK` page when it had paged; every incident's owed
//! pages that nobody holds are paid (an `ALARM` a crash or a failed publish left behind, an `OK` of a closed one).
//!
//! The close and its `OK` are one compare-and-swap write: the state flips to `closed` and the `OK` is recorded as
//! owed (and claimed) together. If the page then fails, nothing is undone: the close stands and the `OK` stays
//! owed for the next check (or the next batch of the incident, which pays it before the next occurrence's
//! `ALARM`). The only later writes are the settle or the release of its own pages, by id, on whatever the
//! document has become, so a batch merged meanwhile keeps its counts.

use super::{Ctx, INCIDENTS_PREFIX, PAGE_LEASE, messages, pages, store};
use crate::rules::incident::{IncidentState, evaluate_quiet};
use dr_ports::error::StoreError;
use dr_ports::{Clock, ControlBucket, Notifier};
use futures_util::future::join_all;

/// The scheduled check's part: closes every incident that has been quiet for `quiet` (no warning or critical
/// event received, lag not outstanding), with an `OK` page for those that had paged, and pays the pages owed by
/// any incident. Each incident is updated with compare-and-swap, concurrently. Returns the ids closed; if any
/// incident failed, the first error (the others were still processed; a page that could not be published stays
/// owed, so the next check sends it).
pub async fn close_quiet_incidents<B: ControlBucket, N: Notifier, C: Clock>(
    bucket: &B,
    notifier: &N,
    clock: &C,
    environment: &str,
    region: &str,
    quiet: time::Duration,
) -> Result<Vec<String>, StoreError> {
    let ctx = Ctx::new(bucket, notifier, clock, environment, region);
    let keys: Vec<String> = bucket.list(INCIDENTS_PREFIX).await?.into_iter().filter(|k| k.ends_with(".json")).collect();
    let results = join_all(keys.iter().map(|key| sweep_one(&ctx, key, quiet))).await;
    let mut closed = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(Some(id)) => closed.push(id),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(closed),
    }
}

/// Closes one incident if it is quiet (owing its `OK`), claims its owed pages, pays them. Returns its id when it
/// closed it.
async fn sweep_one<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    key: &str,
    quiet: time::Duration,
) -> Result<Option<String>, StoreError> {
    let now = ctx.now;
    let changed = store::update(ctx.bucket, key, None, |inc| {
        let mut closed_now = false;
        if inc.state != IncidentState::Closed {
            let decision = evaluate_quiet(inc, now, quiet);
            closed_now = inc.state == IncidentState::Closed;
            messages::owe(ctx, inc, &decision, &[]);
        }
        let claimed = inc.owed_pages.claim(now, PAGE_LEASE);
        (closed_now || !claimed.is_empty()).then_some((closed_now, claimed))
    })
    .await?;
    let Some(written) = changed else { return Ok(None) };
    let (closed_now, claimed) = written.result;
    let closed = closed_now.then(|| written.incident.id.clone());
    if let Some(id) = &closed {
        tracing::info!(incident = %id, pages = claimed.len(), "quiet replication incident closed");
    }
    let paid = pages::pay(ctx, key, written.incident, written.etag, claimed).await;
    match paid.error {
        Some(e) => Err(e),
        None => Ok(closed),
    }
}
