//! Paying owed pages. The write that claimed them (a batch's merge, the check's sweep) hands them over with the
//! document it wrote; they are published in order, then settled (removed) by a conditional write that also
//! claims what was decided meanwhile (a concurrent batch queued an escalation behind them), for a few rounds. A
//! publish that fails stops the round: the pages not published are released for the next writer of the incident.
//! A settle that fails leaves them claimed: once the lease runs out they are sent again (same `AlarmName`).

use super::{Ctx, PAGE_LEASE, messages, store};
use crate::rules::incident::Incident;
use crate::rules::outbox::OwedPage;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, Notifier};

/// Settle-and-claim rounds one payer runs before leaving what is left to the next writer.
const PAY_ROUNDS: usize = 3;

/// What paying did.
pub(super) struct Paid {
    /// Pages published.
    pub published: usize,
    /// The publish that failed (its page and those after it are released, still owed).
    pub error: Option<StoreError>,
    /// The document as last written, when known.
    pub incident: Option<Incident>,
}

/// Publishes `claimed` (claimed by the write of `incident`, whose ETag is `etag`), settles, claims the next.
pub(super) async fn pay<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    key: &str,
    incident: Incident,
    etag: String,
    claimed: Vec<OwedPage>,
) -> Paid {
    let id = incident.id.clone();
    let now = ctx.now;
    let mut known = Some((incident, etag));
    let mut claimed = claimed;
    let mut paid = Paid { published: 0, error: None, incident: None };
    for round in 1..=PAY_ROUNDS {
        if claimed.is_empty() {
            break;
        }
        let mut done: Vec<String> = Vec::new();
        let mut failure = None;
        for page in &claimed {
            match messages::publish(ctx.notifier, &id, page).await {
                Ok(()) => done.push(page.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        paid.published += done.len();
        let undone: Vec<String> = claimed.iter().map(|p| p.id.clone()).filter(|p| !done.contains(p)).collect();
        let error_text = failure.as_ref().map(ToString::to_string);
        let claim_more = failure.is_none() && round < PAY_ROUNDS;
        let settled = store::update(ctx.bucket, key, known.take(), |inc| {
            inc.owed_pages.settle(&done);
            if let Some(e) = &error_text {
                inc.owed_pages.release(&undone, e);
            }
            Some(if claim_more { inc.owed_pages.claim(now, PAGE_LEASE) } else { Vec::new() })
        })
        .await;
        claimed = match settled {
            Ok(Some(w)) => {
                known = Some((w.incident.clone(), w.etag));
                paid.incident = Some(w.incident);
                w.result
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(
                    incident = %id, error = %e, published = done.len(),
                    "owed pages could not be settled: they are sent again once their claim runs out"
                );
                Vec::new()
            }
        };
        if let Some(e) = failure {
            tracing::error!(incident = %id, error = %e, owed = undone.len(), "page could not be published: still owed");
            paid.error = Some(e);
            break;
        }
    }
    paid
}
