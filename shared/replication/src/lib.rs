//! What the `replication-failure` function does with a batch of S3 replication notifications, over the ports:
//! incidents merged with compare-and-swap and idempotent per message, pages that are never lost, re-drive
//! manifests, quarantined bodies. Also the scheduled side ([`close_quiet_incidents`], [`open_incidents`]) and the
//! snapshot source ([`IncidentsSource`]).
//!
//! | module | what |
//! |---|---|
//! | `batch` | [`process_batch`]: one payload in three rounds of concurrent AWS calls |
//! | `outcome` | [`BatchOutcome`] and its parts: what happened, the SQS `batchItemFailures`, the summary |
//! | `store` | the incident store: read (quarantining an unreadable document), conditional write, CAS loop |
//! | `messages` | the page and the chat note of a decision, rendered into the incident's outbox |
//! | `pages` | paying owed pages: publish in order, settle, release, claim the next |
//! | `quiet` | [`close_quiet_incidents`], the scheduled check's part |
//! | `rpo` | [`open_incidents`], [`summarize`], [`IncidentsSource`]: open incidents as RPO risk |
//!
//! One batch ([`process_batch`]) is three rounds of concurrent AWS calls, whatever its number of records:
//! 1. per incident, GET `replication/incidents/{id}.json` with its ETag, beside the quarantine PUT of every
//!    unparseable body; the incident's ledger says which records it counted before (a redelivered message, S3's
//!    duplicate event);
//! 2. one PUT per re-drive manifest of the failed objects **not counted before**
//!    (`replication/manifests/{date}/{content id}-{n}.csv`, one per source bucket and presence of version ids);
//! 3. per incident, side by side: [`merge_delivery`](crate::rules::incident::merge_delivery) of the records
//!    not counted before, the decided page rendered into the document's outbox, PUT with `If-Match`
//!    (`If-None-Match: *` when new); on a lost race read and merge again, at most [`CAS_ATTEMPTS`] times; then the
//!    owed pages it claimed are published (page and chat note side by side) and settled (one more conditional PUT).
//!
//! So a batch costs 2 calls per incident, +3 per incident that pages, +1 per manifest, +1 per poison body; a
//! redelivered message alone costs one GET per incident it touches.
//!
//! Failures, per SQS message (`ReportBatchItemFailures`): a message whose incident could not be read or written
//! (an AWS error, or [`CAS_ATTEMPTS`] lost races) or whose manifest could not be written is returned as a batch
//! item failure, and only it is retried; the messages whose manifest failed are left out of every incident, so
//! their retry counts them once. A body that cannot be parsed is acknowledged once it is quarantined; if the
//! quarantine write fails, the message is retried. SNS and direct invocations are retried whole by Lambda, so any
//! failure there fails the invocation; the ledger makes the retry count nothing twice.
//!
//! A page is recorded as owed in the incident document by the write that decides it, before it is published,
//! and stays owed until it is known to be published (`crate::rules::outbox`): a crash, a lost answer or
//! a failed publish leaves it for the next writer of the incident (the next delivery, the redelivery, the
//! scheduled check). When a publish fails, one message of the incident is retried (SQS) or the invocation fails
//! (SNS, direct), so that a delivery comes back soon to pay it. Pages carry a stable `AlarmName` per incident, so
//! a page repeated after a crash lands in the same PagerDuty / Opsgenie incident.
//!
//! Replication failures never trigger a failover: failing over to a replica that is behind loses data. Open
//! incidents are reported as RPO risk by `status`, `check`, snapshots and drills ([`open_incidents`]).

mod batch;
mod messages;
mod outcome;
mod pages;
mod quiet;
mod rpo;
pub mod rules;
mod store;
#[cfg(test)]
mod tests;

use dr_ports::{Clock, ControlBucket, Notifier};
use time::OffsetDateTime;

pub use batch::process_batch;
pub use outcome::{BatchOutcome, Failure, IncidentResult, IncidentWrite, ManifestWrite, PageStatus, Quarantined};
pub use quiet::close_quiet_incidents;
pub use rpo::{IncidentSummary, IncidentsSource, open_incidents, summaries, summarize};

/// Where incident documents live in the control bucket.
pub use domain::layout::INCIDENTS_PREFIX;
/// Where re-drive manifests live in the control bucket.
pub use domain::layout::MANIFESTS_PREFIX;
/// The function name used for quarantined inputs (`quarantine/replication-failure/...`).
pub const FUNCTION_NAME: &str = "replication-failure";
/// Read-merge-write attempts per incident before its messages are retried by SQS instead.
pub const CAS_ATTEMPTS: u32 = 6;
/// The name of the snapshot file written by [`IncidentsSource`].
pub const SNAPSHOT_FILE: &str = "replication-incidents.json";
/// How long a claim on owed pages holds off other payers: longer than a publish with its retries takes, shorter
/// than the SQS visibility timeout, so that the redelivery of a crashed batch finds the claim expired.
pub const PAGE_LEASE: time::Duration = time::Duration::minutes(2);

/// The key of an incident's document.
pub fn incident_key(id: &str) -> String {
    domain::layout::incident(id)
}

/// The stable `AlarmName` of an incident's pages: PagerDuty and Opsgenie key their incident on it.
pub fn alarm_name(environment: &str, incident_id: &str) -> String {
    format!("DR {environment} replication {incident_id}")
}

/// The `incident_key` message attribute (and chat thread id) of an incident's messages.
pub fn incident_attribute(environment: &str, incident_id: &str) -> String {
    format!("dr-{environment}-replication-{incident_id}")
}

/// The ports and settings one batch or one check works with; `now` is read once.
struct Ctx<'a, B, N> {
    bucket: &'a B,
    notifier: &'a N,
    environment: &'a str,
    region: &'a str,
    now: OffsetDateTime,
}

impl<'a, B: ControlBucket, N: Notifier> Ctx<'a, B, N> {
    fn new(bucket: &'a B, notifier: &'a N, clock: &impl Clock, environment: &'a str, region: &'a str) -> Self {
        Ctx { bucket, notifier, environment, region, now: clock.now() }
    }
}
