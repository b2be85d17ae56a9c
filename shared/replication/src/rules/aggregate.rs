//! Aggregation of one batch: records -> groups -> one [`GroupedForIncident`] per incident, plus the failed
//! objects for the re-drive manifest.
//!
//! - A **group** is (source bucket, destination bucket, rule id, event type, failure reason): for failures the
//!   reason decides, for the other event types the type. It keeps a count, first/last event time and a bounded
//!   sample of keys ([`SAMPLE_KEYS`]).
//! - An **incident** is (source bucket, rule id): [`IncidentKey`]. The AWS calls a batch makes grow with the
//!   number of incidents (one read and one conditional write each), never with the number of records.
//! - **Duplicates**: S3 and SQS deliver at least once; a record identical in (event type, source bucket, key,
//!   version id, rule id, destination, reason) to one already in the batch is counted once
//!   ([`BatchAggregate::duplicates`]).
//! - **Failed objects**: every `OperationFailedReplication` record's (bucket, key, version id), whatever the
//!   reason, once per batch, in first-seen order. Lag and not-tracked records are not failures and are not in
//!   the manifest.
//! - **Key samples** are "bottom-k": the [`SAMPLE_KEYS`] keys with the smallest FNV-1a hash. That is a fair
//!   sample of the keys (not the alphabetically first), and merging two samples gives the same result in any
//!   order, which keeps incident merges commutative.

use super::classify::{Classification, FailureReason, Severity, classify};
use super::event::{ReplicationEventType, ReplicationRecord};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use time::OffsetDateTime;

/// The most keys a group or an incident keeps as a sample.
pub const SAMPLE_KEYS: usize = 20;

/// The incident a record belongs to: (source bucket, replication rule id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct IncidentKey {
    /// The source bucket.
    pub source_bucket: String,
    /// The replication rule id (empty when the events carried none).
    pub rule_id: String,
}

impl IncidentKey {
    /// A stable, S3-key-safe, injective id: `<bucket>__<rule id>`, each part escaped.
    ///
    /// Escaping keeps `A-Z a-z 0-9 . -` and writes every other byte as `_XX` (upper-case hex), so the id
    /// uses only characters safe in S3 keys and URLs, and `__` (never produced by the escaping, where `_` is
    /// always followed by a hex digit) separates the two parts unambiguously; two different keys never share
    /// an id, and a human still reads it: `databricks-prod-data-use1__delta-tables`. A hash was not chosen
    /// because on-call reads this id in pages and in `replication/incidents/`. Longest: 63 + 2 + 3 x 255
    /// characters, well within S3's 1,024-byte keys.
    pub fn id(&self) -> String {
        let mut out = String::with_capacity(self.source_bucket.len() + self.rule_id.len() + 2);
        escape_id_part(&self.source_bucket, &mut out);
        out.push_str("__");
        escape_id_part(&self.rule_id, &mut out);
        out
    }
}

impl std::fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rule {:?}", self.source_bucket, self.rule_id)
    }
}

fn escape_id_part(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push(hex_upper(b >> 4));
            out.push(hex_upper(b));
        }
    }
}

/// The upper-case hex digit of the low four bits.
pub(crate) fn hex_upper(n: u8) -> char {
    let n = n & 0x0f;
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// The grouping key within a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Source bucket.
    pub source_bucket: String,
    /// Rule id (empty when absent).
    pub rule_id: String,
    /// Destination bucket name (empty when absent).
    pub destination_bucket: String,
    /// Event type.
    pub event_type: ReplicationEventType,
    /// Failure reason, for failures that carry one.
    pub failure_reason: Option<FailureReason>,
}

impl GroupKey {
    /// The reason for failures, else the event type: what the group is about, e.g. `AssumeRoleNotPermitted`.
    pub fn cause(&self) -> &str {
        match &self.failure_reason {
            Some(r) if self.event_type == ReplicationEventType::OperationFailedReplication => r.as_str(),
            _ => self.event_type.as_str(),
        }
    }
}

/// The records of one group in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// What the records share.
    pub key: GroupKey,
    /// Category, severity and action.
    pub classification: Classification,
    /// Distinct records.
    pub count: u64,
    /// Earliest `eventTime`.
    pub first_event: Option<OffsetDateTime>,
    /// Latest `eventTime`.
    pub last_event: Option<OffsetDateTime>,
    /// At most [`SAMPLE_KEYS`] keys (bottom-k by FNV-1a hash), sorted by that hash.
    pub sample_keys: Vec<String>,
}

/// What a batch contributes to one incident: its groups and the messages they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupedForIncident {
    /// The incident.
    pub key: IncidentKey,
    /// Its groups in this batch, sorted by key.
    pub groups: Vec<Group>,
    /// Indexes of the messages (as in [`super::event::Payload::records`]) that contributed, sorted: if writing
    /// this incident fails, these are the batch item failures to report.
    pub messages: Vec<usize>,
}

impl GroupedForIncident {
    /// Records in this batch part.
    pub fn total(&self) -> u64 {
        self.groups.iter().map(|g| g.count).sum()
    }

    /// `OperationFailedReplication` records.
    pub fn failed(&self) -> u64 {
        self.count_of(ReplicationEventType::OperationFailedReplication)
    }

    /// Records of one event type.
    pub fn count_of(&self, t: ReplicationEventType) -> u64 {
        self.groups.iter().filter(|g| g.key.event_type == t).map(|g| g.count).sum()
    }

    /// Counts by event type name.
    pub fn counts_by_event_type(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for g in &self.groups {
            *m.entry(g.key.event_type.as_str()).or_insert(0) += g.count;
        }
        m
    }

    /// Counts of failures by reason (`(none)` for a failure without a reason).
    pub fn counts_by_reason(&self) -> BTreeMap<&str, u64> {
        let mut m = BTreeMap::new();
        for g in self.groups.iter().filter(|g| g.key.event_type == ReplicationEventType::OperationFailedReplication) {
            let reason = g.key.failure_reason.as_ref().map_or("(none)", FailureReason::as_str);
            *m.entry(reason).or_insert(0) += g.count;
        }
        m
    }

    /// Counts by category name.
    pub fn counts_by_category(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for g in &self.groups {
            *m.entry(g.classification.category.as_str()).or_insert(0) += g.count;
        }
        m
    }

    /// The highest classification (by [`Category::rank`](super::classify::Category::rank)).
    pub fn highest(&self) -> Option<Classification> {
        self.groups.iter().map(|g| g.classification).max_by_key(|c| c.category.rank())
    }

    /// Earliest event time.
    pub fn first_event(&self) -> Option<OffsetDateTime> {
        self.groups.iter().filter_map(|g| g.first_event).min()
    }

    /// Latest event time.
    pub fn last_event(&self) -> Option<OffsetDateTime> {
        self.groups.iter().filter_map(|g| g.last_event).max()
    }

    /// Latest event time among groups of at least `min` severity.
    pub fn last_event_at_least(&self, min: Severity) -> Option<OffsetDateTime> {
        self.groups.iter().filter(|g| g.classification.severity >= min).filter_map(|g| g.last_event).max()
    }

    /// Latest event time of one event type.
    pub fn last_event_of(&self, t: ReplicationEventType) -> Option<OffsetDateTime> {
        self.groups.iter().filter(|g| g.key.event_type == t).filter_map(|g| g.last_event).max()
    }

    /// Whether any group pages (warning or critical).
    pub fn has_problem(&self) -> bool {
        self.groups.iter().any(|g| g.classification.severity >= Severity::Warning)
    }

    /// The destination buckets named by the records.
    pub fn destination_buckets(&self) -> BTreeSet<&str> {
        self.groups.iter().map(|g| g.key.destination_bucket.as_str()).filter(|d| !d.is_empty()).collect()
    }

    /// The union of the groups' samples, bottom-k again: the incident's sample for this batch.
    pub fn sample_keys(&self) -> Vec<String> {
        let mut all: Vec<(u64, &str)> =
            self.groups.iter().flat_map(|g| g.sample_keys.iter()).map(|k| (fnv1a(k.as_bytes()), k.as_str())).collect();
        all.sort_unstable();
        all.dedup();
        all.truncate(SAMPLE_KEYS);
        all.into_iter().map(|(_, k)| k.to_owned()).collect()
    }
}

/// One object to re-drive: (bucket, key, version id), borrowed from the parsed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailedObject<'a> {
    /// Source bucket.
    pub bucket: &'a str,
    /// Decoded key.
    pub key: &'a str,
    /// Version id, when the event had one.
    pub version_id: Option<&'a str>,
}

/// The result of aggregating one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAggregate<'a> {
    /// Records seen, duplicates included.
    pub records: u64,
    /// Records dropped as exact duplicates of one earlier in the batch.
    pub duplicates: u64,
    /// One entry per incident, sorted by key.
    pub incidents: Vec<GroupedForIncident>,
    /// Failed objects, once each, in first-seen order (input of [`super::manifest::build_manifests`]).
    pub failed_objects: Vec<FailedObject<'a>>,
}

impl BatchAggregate<'_> {
    /// Number of groups over all incidents.
    pub fn group_count(&self) -> usize {
        self.incidents.iter().map(|i| i.groups.len()).sum()
    }
}

type BorrowedGroupKey<'a> = (&'a str, &'a str, &'a str, ReplicationEventType, Option<&'a FailureReason>);

struct Building<'a> {
    classification: Classification,
    count: u64,
    first_event: Option<OffsetDateTime>,
    last_event: Option<OffsetDateTime>,
    sample: Vec<(u64, &'a str)>,
    messages: Vec<usize>,
    /// (key, version id) already counted in this group: the rest of the identity is the group key.
    seen: FastSet<(&'a str, Option<&'a str>)>,
}

/// Groups a batch's records (with their message index) into incidents, and lists the failed objects.
pub fn aggregate<'a, I>(records: I) -> BatchAggregate<'a>
where
    I: IntoIterator<Item = (usize, &'a ReplicationRecord)>,
{
    let mut groups: FastMap<BorrowedGroupKey<'a>, Building<'a>> = FastMap::default();
    let mut seen_objects: FastSet<FailedObject<'a>> = FastSet::default();
    let mut failed_objects = Vec::new();
    let (mut total, mut duplicates) = (0u64, 0u64);

    for (message, r) in records {
        total += 1;
        let gk: BorrowedGroupKey<'a> = (
            r.source_bucket.as_str(),
            r.rule_id.as_deref().unwrap_or(""),
            r.destination_bucket.as_deref().unwrap_or(""),
            r.event_type,
            r.failure_reason.as_ref(),
        );
        let b = groups.entry(gk).or_insert_with(|| Building {
            classification: classify(r.event_type, r.failure_reason.as_ref()),
            count: 0,
            first_event: None,
            last_event: None,
            sample: Vec::new(),
            messages: Vec::new(),
            seen: FastSet::default(),
        });
        if !b.seen.insert((r.key.as_str(), r.version_id.as_deref())) {
            duplicates += 1;
            continue;
        }
        b.count += 1;
        if let Some(t) = r.event_time {
            b.first_event = Some(b.first_event.map_or(t, |f| f.min(t)));
            b.last_event = Some(b.last_event.map_or(t, |l| l.max(t)));
        }
        sample_insert(&mut b.sample, fnv1a(r.key.as_bytes()), &r.key);
        if b.messages.last() != Some(&message) {
            b.messages.push(message);
        }
        if r.event_type == ReplicationEventType::OperationFailedReplication {
            let o = FailedObject { bucket: &r.source_bucket, key: &r.key, version_id: r.version_id.as_deref() };
            if seen_objects.insert(o) {
                failed_objects.push(o);
            }
        }
    }

    let incidents = into_incidents(groups);
    BatchAggregate { records: total, duplicates, incidents, failed_objects }
}

/// The groups, gathered by incident (source bucket and rule), each incident's groups in key order and its
/// messages once each.
fn into_incidents<'a>(groups: FastMap<BorrowedGroupKey<'a>, Building<'a>>) -> Vec<GroupedForIncident> {
    let mut by_incident: BTreeMap<(&str, &str), GroupedForIncident> = BTreeMap::new();
    for ((bucket, rule, dest, event_type, reason), b) in groups {
        let inc = by_incident.entry((bucket, rule)).or_insert_with(|| GroupedForIncident {
            key: IncidentKey { source_bucket: bucket.to_owned(), rule_id: rule.to_owned() },
            groups: Vec::new(),
            messages: Vec::new(),
        });
        inc.messages.extend_from_slice(&b.messages);
        inc.groups.push(Group {
            key: GroupKey {
                source_bucket: bucket.to_owned(),
                rule_id: rule.to_owned(),
                destination_bucket: dest.to_owned(),
                event_type,
                failure_reason: reason.cloned(),
            },
            classification: b.classification,
            count: b.count,
            first_event: b.first_event,
            last_event: b.last_event,
            sample_keys: b.sample.into_iter().map(|(_, k)| k.to_owned()).collect(),
        });
    }
    by_incident
        .into_values()
        .map(|mut inc| {
            inc.groups.sort_by(|a, b| a.key.cmp(&b.key));
            inc.messages.sort_unstable();
            inc.messages.dedup();
            inc
        })
        .collect()
}

/// Inserts into a bottom-k sample kept sorted by (hash, key); a key already present is not added twice.
pub(crate) fn sample_insert<'s>(sample: &mut Vec<(u64, &'s str)>, hash: u64, key: &'s str) {
    let item = (hash, key);
    if sample.len() >= SAMPLE_KEYS && sample.last().is_some_and(|last| item >= *last) {
        return;
    }
    if let Err(pos) = sample.binary_search(&item) {
        sample.insert(pos, item);
        sample.truncate(SAMPLE_KEYS);
    }
}

/// FNV-1a, 64 bits: a hash that is stable across Rust releases and machines (unlike `std`'s `DefaultHasher`).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// A `HashSet` with [`FxHasher`].
pub(crate) type FastSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

/// The Fx hash (rustc's): a word at a time, several times faster than SipHash on the 50-200-byte keys of a
/// batch. Not resistant to hash flooding, which does not matter here: the keys are object keys of the
/// operator's own buckets, delivered by S3, and a batch holds at most some thousands of them.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(rest) {
                *d = *s;
            }
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}
