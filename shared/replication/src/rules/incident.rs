//! The incident document (`replication/incidents/<id>.json`) and the pure decisions about it.
//!
//! [`merge`] folds one batch's [`GroupedForIncident`] into the stored incident and says whether to page. The
//! handler reads the document with its ETag, merges, writes with `If-Match` (or `If-None-Match: *` when new),
//! and on a lost race reads and merges again: `merge` is pure, so a retry is just another call. Counts, first
//! and last seen, the highest category, the destinations, the key sample and the lag marks are sums, minima,
//! maxima and unions, so two batches merged in either order give the same document apart from the paging
//! history and processing times (unit-tested).
//!
//! Paging (never once per object):
//! - **Opened**: the first time the incident holds a warning or critical group. An incident made only of info
//!   groups (object races, not-tracked, lag recovered) is recorded but does not page; it pages later if a
//!   warning or critical group joins it.
//! - **Escalated**: after a page, when the highest severity rises (a category turned critical), or when the
//!   count of failures that need action ([`Incident::actionable_failed`]: every failure but object races, which
//!   are Delta's normal noise) reaches [`ESCALATION_FACTOR`] times the count at the last page.
//! - **Recovered** (an `OK` page): only from [`evaluate_quiet`], run by the scheduled check, when no warning
//!   or critical event arrived for the quiet period and lag is not outstanding (the last missed-threshold
//!   event was followed by a replicated-after-threshold or a failure event). The incident is then closed; the
//!   next problem opens a new occurrence with fresh counts (`occurrence` + 1) under the same id.
//!
//! Redelivery: S3, SNS, SQS and Lambda deliver at least once, and SQS redelivers messages, not batches.
//! [`merge_delivery`] is [`merge`] made idempotent per record: the incident's [`Ledger`] holds the fingerprints of
//! what it counted (per message, and per S3 event when it has a sequencer), written in the same compare-and-swap
//! as the counts, so a message delivered again, alone or regrouped, counts nothing and decides no page.
//!
//! Pages: a decided page is recorded as owed in the document ([`Incident::owed_pages`], see
//! [`super::outbox`]) by the same write that decides it, before anyone publishes it, and stays owed until it is
//! known to be published. The owed pages and the ledger carry over into a new occurrence.
//!
//! Replication failures never trigger a failover (failing over to a replica that is behind loses data); open
//! incidents are reported as RPO risk instead.

use super::aggregate::{GroupedForIncident, IncidentKey, SAMPLE_KEYS, aggregate, fnv1a};
use super::classify::{Category, FailureReason, Severity, classify};
use super::event::ReplicationEventType;
use super::ledger::{Delivered, Ledger};
pub use super::outbox::PageDecision;
use super::outbox::{Outbox, OwedPage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::{Duration, OffsetDateTime};

/// Version of the incident document's layout (2: `ledger` and `owed_pages` replace `merged_batches`; a
/// version-1 document reads as one with an empty ledger and nothing owed).
pub const SCHEMA_VERSION: u32 = 2;

/// The failed count must grow by this factor since the last page to page again.
pub const ESCALATION_FACTOR: u64 = 10;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Problems seen, not known to be over.
    Open,
    /// Replication caught up after the last problem (a replicated-after-threshold event is the latest news);
    /// waiting for the quiet period before closing.
    Recovered,
    /// Over; the `OK` page was sent if the incident had paged.
    Closed,
}

/// The stored incident of one (source bucket, rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// [`IncidentKey::id`]: the object name and the stable alarm name suffix.
    pub id: String,
    /// Source bucket.
    pub source_bucket: String,
    /// Replication rule id (empty when the events had none).
    pub rule_id: String,
    /// 1 for the first incident under this id, +1 each time a closed one reopens.
    pub occurrence: u32,
    /// Open, recovered or closed.
    pub state: IncidentState,
    /// When this occurrence was created (processing time).
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Last merge or evaluation (processing time).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it was closed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    /// Earliest `eventTime` seen.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    /// Latest `eventTime` seen.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// Latest `eventTime` of a warning or critical event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_problem_at: Option<OffsetDateTime>,
    /// Latest processing time of a batch holding a warning or critical event (the quiet period runs from here).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_problem_received_at: Option<OffsetDateTime>,
    /// Latest `eventTime` of an `OperationFailedReplication`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    /// Latest `eventTime` of an `OperationMissedThreshold`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_missed_threshold_at: Option<OffsetDateTime>,
    /// Latest `eventTime` of an `OperationReplicatedAfterThreshold`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_lag_recovered_at: Option<OffsetDateTime>,
    /// Destination buckets named by the events.
    #[serde(default)]
    pub destination_buckets: BTreeSet<String>,
    /// Events by type (`OperationFailedReplication`, ...).
    #[serde(default)]
    pub counts_by_event_type: BTreeMap<String, u64>,
    /// Failures by `failureReason` (`(none)` for a failure without one).
    #[serde(default)]
    pub counts_by_reason: BTreeMap<String, u64>,
    /// Events by category (`replication_broken`, ...).
    #[serde(default)]
    pub counts_by_category: BTreeMap<String, u64>,
    /// All events.
    pub total_events: u64,
    /// `OperationFailedReplication` events: objects that need a re-drive.
    pub total_failed: u64,
    /// The highest category seen.
    pub highest_category: Category,
    /// Its severity.
    pub highest_severity: Severity,
    /// At most [`SAMPLE_KEYS`] keys (bottom-k by FNV-1a hash: a fair, order-independent sample).
    #[serde(default)]
    pub sample_keys: Vec<String>,
    /// [`Incident::actionable_failed`] when the last page was sent.
    pub count_at_last_page: u64,
    /// `highest_severity` when the last page was sent.
    #[serde(default)]
    pub severity_at_last_page: Option<Severity>,
    /// Pages decided for this occurrence (opened, escalations, recovered): published, or still in
    /// [`Incident::owed_pages`].
    pub pages_sent: u32,
    /// When the last page was decided.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_page_at: Option<OffsetDateTime>,
    /// Deliveries that counted records into this occurrence.
    pub batches_merged: u64,
    /// Pages decided and not yet known to be published, oldest first ([`super::outbox`]); carried over into a
    /// new occurrence (an `OK` still owed goes out before the next `ALARM`).
    #[serde(default)]
    pub owed_pages: Outbox,
    /// Fingerprints of what was counted ([`super::ledger`]), carried over into a new occurrence: what makes
    /// [`merge_delivery`] idempotent per message. Bounded (about 176 KB at most).
    #[serde(default)]
    pub ledger: Ledger,
}

/// One line of "what to do", for messages: a cause, how often, and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionItem {
    /// The failure reason, or the event type for events without one.
    pub cause: String,
    /// Events with this cause.
    pub count: u64,
    /// Its category.
    pub category: Category,
    /// Its severity.
    pub severity: Severity,
    /// What to do.
    pub action: &'static str,
}

impl Incident {
    fn new(key: &IncidentKey, now: OffsetDateTime, occurrence: u32) -> Incident {
        Incident {
            schema_version: SCHEMA_VERSION,
            id: key.id(),
            source_bucket: key.source_bucket.clone(),
            rule_id: key.rule_id.clone(),
            occurrence,
            state: IncidentState::Open,
            opened_at: now,
            updated_at: now,
            closed_at: None,
            first_seen: None,
            last_seen: None,
            last_problem_at: None,
            last_problem_received_at: None,
            last_failure_at: None,
            last_missed_threshold_at: None,
            last_lag_recovered_at: None,
            destination_buckets: BTreeSet::new(),
            counts_by_event_type: BTreeMap::new(),
            counts_by_reason: BTreeMap::new(),
            counts_by_category: BTreeMap::new(),
            total_events: 0,
            total_failed: 0,
            highest_category: Category::LagRecovered,
            highest_severity: Severity::Info,
            sample_keys: Vec::new(),
            count_at_last_page: 0,
            severity_at_last_page: None,
            pages_sent: 0,
            last_page_at: None,
            batches_merged: 0,
            owed_pages: Outbox::default(),
            ledger: Ledger::default(),
        }
    }

    /// Records a decided page as owed (its id: `{occurrence}.{pages decided}`); returns a page dropped to keep
    /// the outbox bounded, if any. `page` and `chat` are rendered by the caller from this document.
    pub fn owe(&mut self, decision: &PageDecision, page: OwedMessages, now: OffsetDateTime) -> Option<OwedPage> {
        let kind = decision.kind()?;
        self.owed_pages.push(OwedPage {
            id: format!("{}.{}", self.occurrence, self.pages_sent),
            kind,
            occurrence: self.occurrence,
            decided_at: now,
            claimed_until: None,
            failed_attempts: 0,
            last_error: None,
            page: page.page,
            chat: page.chat,
        })
    }

    /// The key this incident belongs to.
    pub fn key(&self) -> IncidentKey {
        IncidentKey { source_bucket: self.source_bucket.clone(), rule_id: self.rule_id.clone() }
    }

    /// Objects missed the replication threshold and neither replicated nor failed since.
    pub fn lag_outstanding(&self) -> bool {
        match self.last_missed_threshold_at {
            None => false,
            Some(missed) => self.last_lag_recovered_at.max(self.last_failure_at).is_none_or(|end| end < missed),
        }
    }

    /// Failures that need action: every `OperationFailedReplication` except object races (an object deleted or
    /// changed before it replicated, already replicated), which Delta writes and VACUUM produce all the time.
    /// Escalation by growth counts these, so that background noise never pages again.
    pub fn actionable_failed(&self) -> u64 {
        let races = self.counts_by_category.get(Category::ObjectRace.as_str()).copied().unwrap_or(0);
        self.total_failed.saturating_sub(races)
    }

    /// What to do, one item per cause, most severe and most frequent first.
    pub fn actions(&self) -> Vec<ActionItem> {
        let mut items: Vec<ActionItem> = Vec::new();
        for (reason, &count) in &self.counts_by_reason {
            let parsed = (reason != "(none)").then(|| FailureReason::parse(reason));
            let c = classify(ReplicationEventType::OperationFailedReplication, parsed.as_ref());
            let (category, severity, action) = (c.category, c.severity, c.action);
            items.push(ActionItem { cause: reason.clone(), count, category, severity, action });
        }
        for t in ReplicationEventType::ALL.into_iter().filter(|t| *t != ReplicationEventType::OperationFailedReplication) {
            if let Some(&count) = self.counts_by_event_type.get(t.as_str()) {
                let c = classify(t, None);
                items.push(ActionItem {
                    cause: t.as_str().to_owned(),
                    count,
                    category: c.category,
                    severity: c.severity,
                    action: c.action,
                });
            }
        }
        items.sort_by(|a, b| b.category.rank().cmp(&a.category.rank()).then(b.count.cmp(&a.count)));
        items
    }

    fn add(&mut self, batch: &GroupedForIncident, now: OffsetDateTime) {
        for (k, v) in batch.counts_by_event_type() {
            *self.counts_by_event_type.entry(k.to_owned()).or_insert(0) += v;
        }
        for (k, v) in batch.counts_by_reason() {
            *self.counts_by_reason.entry(k.to_owned()).or_insert(0) += v;
        }
        for (k, v) in batch.counts_by_category() {
            *self.counts_by_category.entry(k.to_owned()).or_insert(0) += v;
        }
        self.total_events += batch.total();
        self.total_failed += batch.failed();
        self.first_seen = min_opt(self.first_seen, batch.first_event());
        self.last_seen = self.last_seen.max(batch.last_event());
        self.last_problem_at = self.last_problem_at.max(batch.last_event_at_least(Severity::Warning));
        if batch.has_problem() {
            self.last_problem_received_at = self.last_problem_received_at.max(Some(now));
        }
        self.last_failure_at = self.last_failure_at.max(batch.last_event_of(ReplicationEventType::OperationFailedReplication));
        self.last_missed_threshold_at =
            self.last_missed_threshold_at.max(batch.last_event_of(ReplicationEventType::OperationMissedThreshold));
        self.last_lag_recovered_at =
            self.last_lag_recovered_at.max(batch.last_event_of(ReplicationEventType::OperationReplicatedAfterThreshold));
        self.destination_buckets.extend(batch.destination_buckets().into_iter().map(str::to_owned));
        let highest = self.counts_by_category.keys().filter_map(|c| category_from_str(c)).reduce(Category::max);
        if let Some(h) = highest {
            self.highest_category = h;
            self.highest_severity = h.severity();
        }
        self.sample_keys = merge_samples(&self.sample_keys, &batch.sample_keys());
        self.batches_merged += 1;
        self.updated_at = self.updated_at.max(now);
        let recovered_since_problem = match (self.last_lag_recovered_at, self.last_problem_at) {
            (Some(r), Some(p)) => r >= p,
            _ => false,
        };
        self.state = if self.highest_severity >= Severity::Warning && recovered_since_problem && !self.lag_outstanding() {
            IncidentState::Recovered
        } else {
            IncidentState::Open
        };
    }

    fn decide_page(&mut self, now: OffsetDateTime) -> PageDecision {
        if self.highest_severity < Severity::Warning {
            return PageDecision::None;
        }
        let decision = match self.severity_at_last_page {
            None => PageDecision::Opened,
            Some(paged) if self.highest_severity > paged => PageDecision::Escalated {
                why: format!(
                    "highest severity rose from {} to {} ({})",
                    paged.as_str(),
                    self.highest_severity.as_str(),
                    self.highest_category.as_str()
                ),
            },
            Some(_) if self.actionable_failed() >= self.count_at_last_page.max(1).saturating_mul(ESCALATION_FACTOR) => {
                PageDecision::Escalated {
                    why: format!(
                        "failed objects grew from {} to {} since the last page ({}x or more)",
                        self.count_at_last_page,
                        self.actionable_failed(),
                        ESCALATION_FACTOR
                    ),
                }
            }
            Some(_) => PageDecision::None,
        };
        if decision != PageDecision::None {
            self.record_page(now);
        }
        decision
    }

    fn record_page(&mut self, now: OffsetDateTime) {
        self.pages_sent = self.pages_sent.saturating_add(1);
        self.last_page_at = Some(now);
        self.count_at_last_page = self.actionable_failed();
        self.severity_at_last_page = Some(self.highest_severity);
    }
}

/// Folds one batch's part into the stored incident (`existing`: the document stored under
/// `batch_part.key.id()`, `None` when there is none yet; a closed one starts a new occurrence) and decides the
/// page. Pure: on a lost compare-and-swap, call it again with the fresh document.
pub fn merge(existing: Option<Incident>, batch_part: &GroupedForIncident, now: OffsetDateTime) -> (Incident, PageDecision) {
    let mut incident = match existing {
        Some(i) if i.state != IncidentState::Closed => i,
        Some(closed) => {
            let mut next = Incident::new(&batch_part.key, now, closed.occurrence.saturating_add(1));
            next.owed_pages = closed.owed_pages;
            next.ledger = closed.ledger;
            next
        }
        None => Incident::new(&batch_part.key, now, 1),
    };
    incident.add(batch_part, now);
    let decision = incident.decide_page(now);
    (incident, decision)
}

/// The rendered messages of a decided page, for [`Incident::owe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedMessages {
    /// The page.
    pub page: super::outbox::StoredMessage,
    /// Its chat note.
    pub chat: Option<super::outbox::StoredMessage>,
}

/// The result of [`merge_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMerge {
    /// The document to write (unchanged when `counted` is 0).
    pub incident: Incident,
    /// The page the merge decided (to render and record with [`Incident::owe`]).
    pub decision: PageDecision,
    /// Records counted now (distinct within the delivery).
    pub counted: u64,
    /// Records skipped because the incident had counted them: redelivered messages, S3's duplicate events.
    pub already_counted: u64,
    /// Indexes of the messages whose records were counted now, sorted.
    pub messages: Vec<usize>,
}

/// [`merge`] made idempotent per record: folds into the stored incident (`existing`; `None` when there is none
/// yet, a closed one starts a new occurrence) the records of `delivered` that belong to `key` and that its
/// [`Ledger`] has not counted, records their fingerprints, and decides the page. Records counted before are
/// skipped; when nothing is left the document comes back unchanged (a closed incident stays closed). Pure: on a
/// lost compare-and-swap, call it again with the fresh document.
pub fn merge_delivery(
    existing: Option<Incident>,
    key: &IncidentKey,
    delivered: &[Delivered<'_>],
    now: OffsetDateTime,
) -> DeliveryMerge {
    let fresh = existing.as_ref().map_or_else(|| delivered.to_vec(), |i| i.ledger.index().uncounted(delivered));
    let already_counted = (delivered.len() - fresh.len()) as u64;
    let part = aggregate(fresh.iter().map(|d| (d.message, d.record))).incidents.into_iter().find(|p| p.key == *key);
    let Some(part) = part else {
        let incident = existing.unwrap_or_else(|| Incident::new(key, now, 1));
        return DeliveryMerge { incident, decision: PageDecision::None, counted: 0, already_counted, messages: Vec::new() };
    };
    let (mut incident, decision) = merge(existing, &part, now);
    let mine = fresh
        .iter()
        .filter(|d| d.record.source_bucket == key.source_bucket && d.record.rule_id.as_deref().unwrap_or("") == key.rule_id);
    incident.ledger.record(now, mine.map(Delivered::fingerprint));
    DeliveryMerge { incident, decision, counted: part.total(), already_counted, messages: part.messages }
}

/// The scheduled check: closes an incident once nothing worth paging arrived for `quiet_period` and lag is not
/// outstanding. Returns [`PageDecision::Recovered`] when it closed an incident that had paged; an info-only
/// incident closes silently (quiet period counted from its last update).
pub fn evaluate_quiet(incident: &mut Incident, now: OffsetDateTime, quiet_period: Duration) -> PageDecision {
    if incident.state == IncidentState::Closed {
        return PageDecision::None;
    }
    let since = if incident.highest_severity >= Severity::Warning {
        incident.last_problem_received_at.unwrap_or(incident.opened_at)
    } else {
        incident.updated_at
    };
    if now - since < quiet_period || incident.lag_outstanding() {
        return PageDecision::None;
    }
    incident.state = IncidentState::Closed;
    incident.closed_at = Some(now);
    incident.updated_at = incident.updated_at.max(now);
    if incident.pages_sent > 0 {
        incident.record_page(now);
        PageDecision::Recovered
    } else {
        PageDecision::None
    }
}

fn min_opt(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn category_from_str(s: &str) -> Option<Category> {
    const ALL: [Category; 9] = [
        Category::ReplicationBroken,
        Category::DestinationProblem,
        Category::SourceObjectProblem,
        Category::ObjectRace,
        Category::BatchReplicationOnly,
        Category::Unclassified,
        Category::ReplicationLag,
        Category::LagRecovered,
        Category::NotTracked,
    ];
    ALL.into_iter().find(|c| c.as_str() == s)
}

/// Bottom-k union of two samples: order-independent.
fn merge_samples(a: &[String], b: &[String]) -> Vec<String> {
    let mut all: Vec<(u64, &str)> = a.iter().chain(b).map(|k| (fnv1a(k.as_bytes()), k.as_str())).collect();
    all.sort_unstable();
    all.dedup();
    all.truncate(SAMPLE_KEYS);
    all.into_iter().map(|(_, k)| k.to_owned()).collect()
}
