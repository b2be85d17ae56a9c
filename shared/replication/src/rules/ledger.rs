//! What an incident has already counted, so that a message delivered again counts nothing and writes no manifest
//! row again.
//!
//! SQS redelivers messages, not batches, and Lambda regroups them: a message whose batch answer was lost comes
//! back alone or beside new messages, and S3 itself may send one event twice (two SQS messages). So idempotency
//! is per record, not per batch. Each record has a 64-bit fingerprint ([`Delivered::fingerprint`]):
//!
//! - with an `s3.object.sequencer` (S3 writes one in every object notification), the fingerprint of the event:
//!   event type, source bucket, rule, destination, failure reason, key, version id and sequencer. It recognises
//!   the same record in a redelivered message *and* in another message (S3's own duplicate);
//! - without one, the fingerprint of its message's id (SQS `messageId`, SNS `MessageId`, or the payload's sha256
//!   for a direct invocation): a message's records for one incident are counted together, in one write.
//!
//! A record is counted already when the ledger holds either its event's or its message's fingerprint.
//!
//! The ledger lives **in the incident document** and is written by the same compare-and-swap as the counts, so
//! a record is counted exactly when its fingerprint is recorded: no crash between the two. It is bounded: the
//! last [`LEDGER_CAPACITY`] fingerprints (oldest dropped first), packed as base64 of 8-byte values, about 11
//! bytes each: at most about 176 KB of the document. That covers the last ~5 full 6 MB batches of one incident
//! (about 3,000 records each), and days of a slow trickle. A redelivery older than that window is counted again
//! (an over-count and a repeated manifest row, never a loss). Fingerprints are sha256-based, so two different
//! records share one with probability about 2^-64 per pair: with a full ledger, one wrongly skipped record in
//! ~10^15 lookups.

use super::aggregate::FastSet;
use super::event::ReplicationRecord;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The most fingerprints an incident keeps (about 176 KB of its document when full).
pub const LEDGER_CAPACITY: usize = 16_384;

/// The most segments (one per merged delivery) an incident keeps; beyond, the two oldest are joined. Bounds the
/// per-segment overhead (about 60 bytes each) of a trickle of one-message deliveries.
pub const LEDGER_SEGMENTS: usize = 128;

/// A record's or a message's identity, 64 bits of a sha256.
pub type Fingerprint = u64;

fn fingerprint_of(parts: &[&[u8]]) -> Fingerprint {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so that no two different part lists hash the same bytes.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first)
}

/// The fingerprint of a message id (SQS `messageId`, SNS `MessageId`, or a payload's digest).
pub fn message_fingerprint(message_id: &str) -> Fingerprint {
    fingerprint_of(&[b"message", message_id.as_bytes()])
}

/// The fingerprint of an event, when it carries an `s3.object.sequencer`: the same notification in any message.
pub fn event_fingerprint(r: &ReplicationRecord) -> Option<Fingerprint> {
    let sequencer = r.sequencer.as_deref()?;
    Some(fingerprint_of(&[
        b"event",
        r.event_type.as_str().as_bytes(),
        r.source_bucket.as_bytes(),
        r.rule_id.as_deref().unwrap_or("").as_bytes(),
        r.destination_bucket.as_deref().unwrap_or("").as_bytes(),
        r.failure_reason.as_ref().map_or("", |f| f.as_str()).as_bytes(),
        r.key.as_bytes(),
        r.version_id.as_deref().unwrap_or("").as_bytes(),
        sequencer.as_bytes(),
    ]))
}

/// A record of a delivery with its message and fingerprints: what a ledger checks and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The index of its message in the payload (as in [`super::event::Payload::records`]).
    pub message: usize,
    /// The record.
    pub record: &'a ReplicationRecord,
    /// [`message_fingerprint`] of its message.
    pub message_fingerprint: Fingerprint,
    /// [`event_fingerprint`] of the record.
    pub event_fingerprint: Option<Fingerprint>,
}

impl<'a> Delivered<'a> {
    /// A record of message `message` (whose id's fingerprint is `message_fingerprint`).
    pub fn new(message: usize, message_fingerprint: Fingerprint, record: &'a ReplicationRecord) -> Delivered<'a> {
        Delivered { message, record, message_fingerprint, event_fingerprint: event_fingerprint(record) }
    }

    /// What the ledger keeps once the record is counted: its event's fingerprint, else its message's.
    pub fn fingerprint(&self) -> Fingerprint {
        self.event_fingerprint.unwrap_or(self.message_fingerprint)
    }
}

/// The fingerprints recorded by one merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// When they were counted (processing time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The fingerprints, oldest first; stored as base64url of 8-byte big-endian values.
    #[serde(serialize_with = "pack", deserialize_with = "unpack")]
    pub fingerprints: Vec<Fingerprint>,
}

/// The fingerprints of what an incident counted, newest last, bounded by [`LEDGER_CAPACITY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// One segment per merge, oldest first.
    #[serde(default)]
    pub segments: Vec<Segment>,
}

impl Ledger {
    /// Fingerprints kept.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.fingerprints.len()).sum()
    }

    /// Whether it keeps none.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.fingerprints.is_empty())
    }

    /// When the oldest kept fingerprint was counted: redeliveries of records counted before may count again.
    pub fn oldest(&self) -> Option<OffsetDateTime> {
        self.segments.first().map(|s| s.at)
    }

    /// The fingerprints as a set, for lookups.
    pub fn index(&self) -> LedgerIndex {
        let mut set = FastSet::default();
        set.reserve(self.len());
        set.extend(self.segments.iter().flat_map(|s| s.fingerprints.iter().copied()));
        LedgerIndex(set)
    }

    /// Keeps `fingerprints` (repeats dropped) as counted at `at`, then drops the oldest beyond the bounds.
    pub fn record(&mut self, at: OffsetDateTime, fingerprints: impl IntoIterator<Item = Fingerprint>) {
        let mut seen = FastSet::default();
        let new: Vec<Fingerprint> = fingerprints.into_iter().filter(|f| seen.insert(*f)).collect();
        if new.is_empty() {
            return;
        }
        self.segments.push(Segment { at, fingerprints: new });
        while self.segments.len() > LEDGER_SEGMENTS {
            let oldest = self.segments.remove(0);
            if let Some(next) = self.segments.first_mut() {
                let mut joined = oldest.fingerprints;
                joined.append(&mut next.fingerprints);
                next.fingerprints = joined;
                next.at = oldest.at;
            }
        }
        let mut excess = self.len().saturating_sub(LEDGER_CAPACITY);
        while excess > 0 {
            let Some(first) = self.segments.first_mut() else { break };
            if first.fingerprints.len() <= excess {
                excess -= first.fingerprints.len();
                self.segments.remove(0);
            } else {
                first.fingerprints.drain(..excess);
                excess = 0;
            }
        }
    }
}

/// A ledger's fingerprints as a set.
#[derive(Debug, Default)]
pub struct LedgerIndex(FastSet<Fingerprint>);

impl LedgerIndex {
    /// Whether the record was counted before: its message's or its event's fingerprint is kept.
    pub fn counted(&self, d: &Delivered<'_>) -> bool {
        self.0.contains(&d.message_fingerprint) || d.event_fingerprint.is_some_and(|e| self.0.contains(&e))
    }

    /// The records not counted before, in order.
    pub fn uncounted<'a>(&self, delivered: &[Delivered<'a>]) -> Vec<Delivered<'a>> {
        delivered.iter().filter(|d| !self.counted(d)).copied().collect()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value of each base64url character; 0xFF for any other byte.
const B64_VALUES: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[B64[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn pack<S: Serializer>(fingerprints: &[Fingerprint], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(fingerprints))
}

fn unpack<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Fingerprint>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    decode(&text).ok_or_else(|| D::Error::custom("fingerprints: expected base64url of 8-byte values"))
}

/// Base64url without padding of the fingerprints' big-endian bytes.
fn encode(fingerprints: &[Fingerprint]) -> String {
    let bytes: Vec<u8> = fingerprints.iter().flat_map(|f| f.to_be_bytes()).collect();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    let sextet = |n: u32, shift: u32| B64[((n >> shift) & 63) as usize];
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[sextet(u32::from(a) << 16, 18), sextet(u32::from(a) << 16, 12)]),
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6)]);
        }
        _ => {}
    }
    String::from_utf8(out).unwrap_or_default()
}

fn decode(text: &str) -> Option<Vec<Fingerprint>> {
    let input = text.as_bytes();
    let mut bytes = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let value = |c: u8| -> Option<u32> {
        let v = B64_VALUES[c as usize];
        (v != 0xFF).then_some(u32::from(v))
    };
    let mut chunks = input.chunks_exact(4);
    for c in &mut chunks {
        let n = (value(c[0])? << 18) | (value(c[1])? << 12) | (value(c[2])? << 6) | value(c[3])?;
        bytes.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    match *chunks.remainder() {
        [] => {}
        [a, b] => bytes.push((((value(a)? << 18) | (value(b)? << 12)) >> 16) as u8),
        [a, b, c] => {
            let n = (value(a)? << 18) | (value(b)? << 12) | (value(c)? << 6);
            bytes.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        _ => return None,
    }
    if bytes.len() % 8 != 0 || input.len() != (bytes.len() * 4).div_ceil(3) {
        return None;
    }
    Some(bytes.chunks_exact(8).map(|c| u64::from_be_bytes(<[u8; 8]>::try_from(c).unwrap_or_default())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2024-09-05 21:10 UTC);

    #[test]
    fn packing_round_trips_and_is_compact() {
        for n in [0usize, 1, 2, 3, 7, 100] {
            let fps: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::MAX >> (i % 64)).collect();
            let text = encode(&fps);
            assert_eq!(text.len(), (n * 8 * 4).div_ceil(3), "{n}");
            assert_eq!(decode(&text), Some(fps));
        }
        assert_eq!(decode("A"), None, "not a whole number of fingerprints");
        assert_eq!(decode("AAAAAAAAAA+"), None, "not base64url");
    }

    #[test]
    fn bounded_oldest_first_and_serialized_small() {
        let mut ledger = Ledger::default();
        ledger.record(AT, [1, 2, 2, 3]);
        assert_eq!(ledger.len(), 3, "repeats kept once");
        ledger.record(AT, []);
        assert_eq!(ledger.segments.len(), 1, "an empty merge keeps no segment");
        for i in 0..LEDGER_CAPACITY as u64 {
            ledger.record(AT + time::Duration::seconds(i as i64), [1000 + i]);
        }
        assert_eq!(ledger.len(), LEDGER_CAPACITY);
        assert!(ledger.segments.len() <= LEDGER_SEGMENTS);
        let index = ledger.index();
        assert!(!index.0.contains(&1) && !index.0.contains(&3) && index.0.contains(&1000), "the oldest 3 were dropped");
        assert!(index.0.contains(&(1000 + LEDGER_CAPACITY as u64 - 1)));
        let json = serde_json::to_string(&ledger).unwrap();
        assert!(json.len() < 190_000, "{} bytes", json.len());
        assert_eq!(serde_json::from_str::<Ledger>(&json).unwrap(), ledger);

        // One delivery larger than the whole ledger keeps its newest fingerprints.
        let mut big = Ledger::default();
        big.record(AT, 0..(LEDGER_CAPACITY as u64 + 10));
        assert_eq!((big.len(), big.segments[0].fingerprints[0]), (LEDGER_CAPACITY, 10));
    }
}
