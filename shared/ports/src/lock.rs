//! The single-flight lock of failover executions: one object under `locks/` in the control bucket.
//!
//! Taken with S3's create-only write (`If-None-Match: *`); a lock whose lease has expired, or one this same
//! execution left behind on purpose (stopped on an error, or waiting for approval), is taken over only by
//! compare-and-swap on its ETag (`If-Match`), so two takers cannot both win.
//!
//! Every time in the lock document is the store's (S3's `Date`), and every judgement of a lease is made against
//! the store's time too (the `Date` of the read that found the lock), never against the local clock: a lease is
//! a time others judge with theirs, and a break-glass `dr` on a laptop minutes ahead would otherwise take over a
//! lock that is still held, and one minutes behind would write an expiry already past for everyone else. The
//! local clock is only the fallback of a store that tells no time.

use crate::error::StoreError;
use crate::{ControlBucket, WriteCondition, Written};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

/// How far a lock's written expiry may stray from the store's time plus its lease before it is written again
/// from the store's: S3's `Date` has whole seconds, and a clock kept by NTP (a Lambda's) is within them.
pub const SKEW_TOLERATED: time::Duration = time::Duration::seconds(5);

/// The resolution of S3's `Date`: the store's time is up to this much later than the header says.
pub const DATE_RESOLUTION: time::Duration = time::Duration::seconds(1);

/// The store's clock as last answered, to tell the store's time later without a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreClock {
    /// The store's time in its answer (S3's `Date`).
    pub at: OffsetDateTime,
    /// The local clock when the answer came.
    pub local: OffsetDateTime,
    /// The monotonic instant the answer came.
    pub seen: Instant,
}

impl StoreClock {
    /// The clock of an answer that came just now, by the local clock `local`.
    pub fn answered(at: OffsetDateTime, local: OffsetDateTime) -> StoreClock {
        StoreClock { at, local, seen: Instant::now() }
    }

    /// The store's time now as its holder must count it, `local` being the local clock now: at the latest the
    /// answer's time (whole seconds: up to a second later) plus the longer of the two measures of the time since.
    /// The monotonic clock does not count a laptop's sleep; the wall clock does, but may be stepped back. Only a
    /// skew (a constant offset) of the local clock is never counted. Takers judge a lease by the `Date` of their
    /// read as it is (at the earliest): the holder stops before anyone may take over, never after.
    pub fn now(&self, local: OffsetDateTime) -> OffsetDateTime {
        let monotonic = time::Duration::try_from(self.seen.elapsed()).unwrap_or(time::Duration::MAX);
        self.at + DATE_RESOLUTION + monotonic.max(local - self.local)
    }
}

/// The key of the failover lock.
pub const FAILOVER_LOCK_KEY: &str = domain::layout::FAILOVER_LOCK;
/// The key of the drill lock: drills never hold the failover lock, so a real failover is never blocked by one.
pub const DRILL_LOCK_KEY: &str = domain::layout::DRILL_LOCK;

/// What the holder is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// An attempt is running (or crashed: then the lease tells).
    Running,
    /// Prepared, waiting for `approve`: only that approval (or an expired lease, or `unlock`) takes it over.
    AwaitingApproval,
    /// The attempt stopped on an error and recorded it: a re-invocation of the same execution resumes at once.
    Stopped,
}

/// The lock document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockDoc {
    /// The execution holding it.
    pub execution_id: String,
    /// The attempt (one invocation) holding it.
    pub attempt_id: String,
    /// What the holder is doing.
    pub state: LockState,
    /// When it was taken (RFC 3339).
    pub acquired_at: String,
    /// After this instant anyone may take it over (RFC 3339).
    pub lease_expires_at: String,
    /// The function and request that hold it, for humans.
    pub holder: String,
}

impl LockDoc {
    /// Whether the lease has expired at `now` (an unreadable expiry counts as expired: `unlock` exists for
    /// humans, but a corrupt lock must not block failover forever).
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        OffsetDateTime::parse(&self.lease_expires_at, &Rfc3339).map(|t| now >= t).unwrap_or(true)
    }
}

/// How the lock was obtained, or who has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Ours now; `took_over` is the lock we replaced, if any.
    Yes {
        /// The ETag of our lock object.
        etag: String,
        /// The lock as stored: ours, its times the store's when the store told its time.
        doc: LockDoc,
        /// The store's clock at our write (`None`: the store told no time).
        store: Option<StoreClock>,
        /// The previous holder, when taken over.
        took_over: Option<LockDoc>,
    },
    /// Someone else (or another attempt of this execution) holds it.
    Held(LockDoc),
}

/// Why a takeover of the current holder's lock is allowed for `ours`, `now` being the store's time.
fn may_take_over(current: &LockDoc, ours: &LockDoc, approving: bool, now: OffsetDateTime) -> bool {
    if current.expired(now) {
        return true;
    }
    current.execution_id == ours.execution_id
        && (current.state == LockState::Stopped || (current.state == LockState::AwaitingApproval && approving))
}

/// The lease `doc` was written with (its expiry less its taking); `None` when either time is unreadable.
fn lease_of(doc: &LockDoc) -> Option<time::Duration> {
    let from = OffsetDateTime::parse(&doc.acquired_at, &Rfc3339).ok()?;
    let until = OffsetDateTime::parse(&doc.lease_expires_at, &Rfc3339).ok()?;
    Some(until - from)
}

/// `doc` taken at the store's time `at`: the same lease, counted from the store's clock.
fn stamped(doc: &LockDoc, at: OffsetDateTime) -> LockDoc {
    match lease_of(doc) {
        Some(lease) => LockDoc {
            acquired_at: domain::primitives::rfc3339(at),
            lease_expires_at: domain::primitives::rfc3339(at + lease),
            ..doc.clone()
        },
        None => doc.clone(),
    }
}

/// Whether `doc`, written when the store's clock said `at`, holds an expiry more than [`SKEW_TOLERATED`] off
/// the store's time plus its lease (it was counted from a skewed local clock).
fn skewed(doc: &LockDoc, at: OffsetDateTime) -> bool {
    let Some(lease) = lease_of(doc) else { return false };
    OffsetDateTime::parse(&doc.lease_expires_at, &Rfc3339).is_ok_and(|until| (until - (at + lease)).abs() > SKEW_TOLERATED)
}

/// The lock `doc` we just wrote at `written`: when the store's clock disagrees with the times it holds, they are
/// written again from the store's (compare-and-swap on the new ETag). `None`: someone took it over meanwhile
/// (they judged our first expiry past: our clock was behind by more than the lease).
async fn settle(
    bucket: &impl ControlBucket,
    key: &str,
    doc: LockDoc,
    written: Written,
    now: OffsetDateTime,
) -> Result<Option<(String, LockDoc, Option<StoreClock>)>, StoreError> {
    let Some(at) = written.store_time else { return Ok(Some((written.etag, doc, None))) };
    if !skewed(&doc, at) {
        return Ok(Some((written.etag, doc, Some(StoreClock::answered(at, now)))));
    }
    let fixed = stamped(&doc, at);
    match update_dated(bucket, key, &fixed, &written.etag).await {
        Ok(again) => {
            let clock = StoreClock::answered(again.store_time.unwrap_or(at), now);
            Ok(Some((again.etag, fixed, Some(clock))))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A lock object read back as a document (an unreadable one as a lock anyone may take over: `unlock` exists for
/// humans, but a corrupt lock must not block failover forever).
fn parse_lock(body: &[u8]) -> LockDoc {
    serde_json::from_slice(body).unwrap_or_else(|e| LockDoc {
        execution_id: "unreadable-lock".into(),
        attempt_id: String::new(),
        state: LockState::Running,
        acquired_at: String::new(),
        lease_expires_at: String::new(),
        holder: format!("unreadable lock object ({e})"),
    })
}

/// Tries to take the lock for `ours`. Leases are judged by the store's time (the `Date` of the read that found
/// the lock), and the lock is written with the store's times (see the module's documentation); `now`, the local
/// clock, stands in only when the store tells no time.
pub async fn acquire(
    bucket: &impl ControlBucket,
    key: &str,
    ours: &LockDoc,
    approving: bool,
    now: OffsetDateTime,
) -> Result<Acquired, StoreError> {
    // A few rounds: the lock can be released or taken between our write and our read.
    for _ in 0..3 {
        let body = serde_json::to_vec(ours).unwrap_or_default();
        match bucket.put_dated(key, body, "application/json", WriteCondition::IfAbsent).await {
            Ok(written) => match settle(bucket, key, ours.clone(), written, now).await? {
                Some((etag, doc, store)) => return Ok(Acquired::Yes { etag, doc, store, took_over: None }),
                None => continue,
            },
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        let read = bucket.get_dated(key).await?;
        let Some(current) = read.object else { continue };
        let doc = parse_lock(&current.body);
        if doc.execution_id == ours.execution_id && doc.attempt_id == ours.attempt_id {
            // Our own earlier write, whose answer was lost (a timeout after S3 applied it): it is ours.
            let written = Written { etag: current.etag, store_time: read.store_time };
            match settle(bucket, key, doc, written, now).await? {
                Some((etag, doc, store)) => return Ok(Acquired::Yes { etag, doc, store, took_over: None }),
                None => continue,
            }
        }
        if !may_take_over(&doc, ours, approving, read.store_time.unwrap_or(now)) {
            return Ok(Acquired::Held(doc));
        }
        let mine = read.store_time.map_or_else(|| ours.clone(), |at| stamped(ours, at));
        let body = serde_json::to_vec(&mine).unwrap_or_default();
        match bucket.put_dated(key, body, "application/json", WriteCondition::IfMatch(current.etag)).await {
            Ok(written) => match settle(bucket, key, mine, written, now).await? {
                Some((etag, mine, store)) => return Ok(Acquired::Yes { etag, doc: mine, store, took_over: Some(doc) }),
                None => continue,
            },
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    match bucket.get(key).await? {
        Some(o) => Ok(Acquired::Held(serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
            service: "S3",
            operation: "GetObject",
            message: format!("{key} is not a lock document: {e}"),
        })?)),
        None => Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.into() }),
    }
}

/// Rewrites our lock (compare-and-swap on `etag`), e.g. to mark it stopped; returns the new ETag.
pub async fn update(bucket: &impl ControlBucket, key: &str, doc: &LockDoc, etag: &str) -> Result<String, StoreError> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    bucket.put(key, body, "application/json", WriteCondition::IfMatch(etag.to_owned())).await
}

/// Rewrites our lock like [`update`], and answers the store's clock at the write (S3's `Date`): the lease is
/// judged by it, never by the local clock.
pub async fn update_dated(bucket: &impl ControlBucket, key: &str, doc: &LockDoc, etag: &str) -> Result<Written, StoreError> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    bucket.put_dated(key, body, "application/json", WriteCondition::IfMatch(etag.to_owned())).await
}

/// Reads the lock, if any.
pub async fn read(bucket: &impl ControlBucket, key: &str) -> Result<Option<(LockDoc, String)>, StoreError> {
    Ok(read_at(bucket, key, OffsetDateTime::UNIX_EPOCH).await?.map(|(doc, etag, _)| (doc, etag)))
}

/// Reads the lock, if any, with the time to judge its lease by: the store's at the read (S3's `Date`), or `now`
/// (the local clock) when the store tells none.
pub async fn read_at(
    bucket: &impl ControlBucket,
    key: &str,
    now: OffsetDateTime,
) -> Result<Option<(LockDoc, String, OffsetDateTime)>, StoreError> {
    let read = bucket.get_dated(key).await?;
    let Some(o) = read.object else { return Ok(None) };
    let doc = serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{key} is not a lock document: {e}"),
    })?;
    Ok(Some((doc, o.etag, read.store_time.unwrap_or(now))))
}

/// Deletes the lock if the lock read now satisfies `releasable` (given the lock and the store's time at the
/// read), conditional on that read's ETag (`If-Match`), so a lock taken over between the read and the delete is
/// never deleted; returns whether it deleted it.
async fn delete_if(
    bucket: &impl ControlBucket,
    key: &str,
    now: OffsetDateTime,
    releasable: impl FnOnce(&LockDoc, OffsetDateTime) -> bool,
) -> Result<bool, StoreError> {
    match read_at(bucket, key, now).await? {
        Some((doc, etag, at)) if releasable(&doc, at) => match bucket.delete_if_match(key, &etag).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        },
        _ => Ok(false),
    }
}

/// Releases the lock if `execution_id` holds it and no attempt of it is running under it (the lock is waiting
/// for approval, stopped, or past its lease); returns whether it did.
///
/// The delete is conditional on the ETag read (`If-Match`): a lock taken over between the read and the delete
/// is never deleted under its new holder, and a running attempt's lock within its lease is never deleted at all
/// (its attempt may be between its checks and its write of `active`; it releases its own by attempt).
pub async fn release(
    bucket: &impl ControlBucket,
    key: &str,
    execution_id: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    delete_if(bucket, key, now, |doc, at| {
        doc.execution_id == execution_id && (doc.state != LockState::Running || doc.expired(at))
    })
    .await
}

/// Releases the lock of an execution whose record has ended (cancelled), whatever the lock's state or lease:
/// no attempt of an ended execution may work under it (an attempt that took it meanwhile finds the record ended
/// at its fence and stops without writing), so a `running` lock left by the ending's own attempt (its release
/// failed) must not block every other execution until its lease expires. Conditional on the ETag read.
pub async fn release_ended(bucket: &impl ControlBucket, key: &str, execution_id: &str) -> Result<bool, StoreError> {
    delete_if(bucket, key, OffsetDateTime::UNIX_EPOCH, |doc, _| doc.execution_id == execution_id).await
}

/// Releases the lock if this very attempt still holds it; returns whether it did. An attempt whose lock was
/// taken over (its lease expired) never deletes the lock of the attempt that took it over.
pub async fn release_attempt(
    bucket: &impl ControlBucket,
    key: &str,
    execution_id: &str,
    attempt_id: &str,
) -> Result<bool, StoreError> {
    delete_if(bucket, key, OffsetDateTime::UNIX_EPOCH, |doc, _| doc.execution_id == execution_id && doc.attempt_id == attempt_id)
        .await
}

/// Releases a lock nobody works under any more: stopped on purpose, or past its lease (its attempt crashed), and,
/// when `execution_id` is given, held by that execution. Conditional on the ETag read. A live attempt's lock is
/// never touched: its holder may be between its checks and its writes.
pub async fn release_abandoned(
    bucket: &impl ControlBucket,
    key: &str,
    execution_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<LockDoc>, StoreError> {
    let Some((doc, etag, now)) = read_at(bucket, key, now).await? else { return Ok(None) };
    let ours = execution_id.is_none_or(|id| doc.execution_id == id);
    let abandoned = doc.state == LockState::Stopped || doc.expired(now);
    if !(ours && abandoned) || doc.state == LockState::AwaitingApproval && !doc.expired(now) {
        return Ok(None);
    }
    match bucket.delete_if_match(key, &etag).await {
        Ok(()) => Ok(Some(doc)),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemBucket;
    use domain::primitives::rfc3339;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn doc(execution: &str, attempt: &str, state: LockState, lease_until: OffsetDateTime) -> LockDoc {
        LockDoc {
            execution_id: execution.into(),
            attempt_id: attempt.into(),
            state,
            acquired_at: rfc3339(NOW),
            lease_expires_at: rfc3339(lease_until),
            holder: "test".into(),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let b = MemBucket::default();
        let a = doc("ex-a", "1", LockState::Running, NOW + time::Duration::minutes(2));
        assert!(matches!(acquire(&b, FAILOVER_LOCK_KEY, &a, false, NOW).await.unwrap(), Acquired::Yes { took_over: None, .. }));
        let other = doc("ex-b", "1", LockState::Running, NOW + time::Duration::minutes(2));
        assert_eq!(acquire(&b, FAILOVER_LOCK_KEY, &other, false, NOW).await.unwrap(), Acquired::Held(a.clone()));
        // Another attempt of the same execution waits too: the first may still be running.
        let again = doc("ex-a", "2", LockState::Running, NOW + time::Duration::minutes(2));
        assert_eq!(acquire(&b, FAILOVER_LOCK_KEY, &again, false, NOW).await.unwrap(), Acquired::Held(a));
    }

    #[tokio::test]
    async fn expired_leases_are_taken_over() {
        let b = MemBucket::default();
        let a = doc("ex-a", "1", LockState::Running, NOW + time::Duration::minutes(2));
        acquire(&b, FAILOVER_LOCK_KEY, &a, false, NOW).await.unwrap();
        let later = NOW + time::Duration::minutes(3);
        let other = doc("ex-b", "1", LockState::Running, later + time::Duration::minutes(2));
        assert_eq!(
            acquire(&b, FAILOVER_LOCK_KEY, &other, false, later).await.unwrap(),
            Acquired::Yes { etag: "\"etag-2\"".into(), doc: other.clone(), store: None, took_over: Some(a) }
        );
    }

    #[tokio::test]
    async fn stopped_and_awaiting_locks_resume_only_their_own_execution() {
        let b = MemBucket::default();
        let lease = NOW + time::Duration::minutes(60);
        acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-a", "1", LockState::AwaitingApproval, lease), false, NOW).await.unwrap();
        // A duplicate of the trigger does not take it; the approval does.
        assert!(matches!(
            acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-a", "2", LockState::Running, lease), false, NOW).await.unwrap(),
            Acquired::Held(_)
        ));
        assert!(matches!(
            acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-b", "1", LockState::Running, lease), true, NOW).await.unwrap(),
            Acquired::Held(_)
        ));
        let approved = doc("ex-a", "3", LockState::Running, lease);
        let Acquired::Yes { etag, .. } = acquire(&b, FAILOVER_LOCK_KEY, &approved, true, NOW).await.unwrap() else { panic!() };
        // Marked stopped, the same execution resumes at once; another still waits.
        let stopped = LockDoc { state: LockState::Stopped, ..approved };
        update(&b, FAILOVER_LOCK_KEY, &stopped, &etag).await.unwrap();
        assert!(matches!(
            acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-b", "1", LockState::Running, lease), false, NOW).await.unwrap(),
            Acquired::Held(_)
        ));
        assert!(matches!(
            acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-a", "4", LockState::Running, lease), false, NOW).await.unwrap(),
            Acquired::Yes { .. }
        ));
    }

    #[tokio::test]
    async fn release_only_frees_our_own_lock() {
        let b = MemBucket::default();
        acquire(&b, FAILOVER_LOCK_KEY, &doc("ex-a", "1", LockState::Running, NOW + time::Duration::minutes(2)), false, NOW)
            .await
            .unwrap();
        assert!(!release(&b, FAILOVER_LOCK_KEY, "ex-b", NOW).await.unwrap());
        // Its attempt is running within its lease: not even its own execution breaks it (the attempt releases it).
        assert!(!release(&b, FAILOVER_LOCK_KEY, "ex-a", NOW).await.unwrap());
        assert!(release(&b, FAILOVER_LOCK_KEY, "ex-a", NOW + time::Duration::minutes(3)).await.unwrap());
        assert!(read(&b, FAILOVER_LOCK_KEY).await.unwrap().is_none());
    }

    /// Issue 23: the lease judged by the store's time. A Lambda (its clock the store's) holds the lock; a `dr`
    /// whose clock is 10 minutes ahead used to see that lease long past and take the lock over.
    #[tokio::test]
    async fn a_taker_whose_clock_is_ahead_never_takes_a_lock_the_store_says_is_held() {
        let b = MemBucket::default();
        b.set_store_time(NOW);
        let lambda = doc("ex-lambda", "1", LockState::Running, NOW + time::Duration::minutes(2));
        acquire(&b, FAILOVER_LOCK_KEY, &lambda, false, NOW).await.unwrap();
        b.set_store_time(NOW + time::Duration::minutes(1));
        let ahead = NOW + time::Duration::minutes(11);
        let laptop =
            LockDoc { acquired_at: rfc3339(ahead), ..doc("ex-dr", "1", LockState::Running, ahead + time::Duration::minutes(2)) };
        assert_eq!(acquire(&b, FAILOVER_LOCK_KEY, &laptop, false, ahead).await.unwrap(), Acquired::Held(lambda.clone()));
        // Nor does it break the lock as expired: not by `release`, not by `release_abandoned` (`unlock`).
        assert!(!release(&b, FAILOVER_LOCK_KEY, "ex-lambda", ahead).await.unwrap());
        assert_eq!(release_abandoned(&b, FAILOVER_LOCK_KEY, None, ahead).await.unwrap(), None);
        assert_eq!(read(&b, FAILOVER_LOCK_KEY).await.unwrap().map(|(d, _)| d), Some(lambda));
    }

    /// A `dr` whose clock is 10 minutes behind used to write an expiry already past for everyone else: a
    /// Lambda took its lock over at once. Its lock now ends at the store's time plus the lease.
    #[tokio::test]
    async fn a_taker_whose_clock_is_behind_writes_the_store_s_expiry_and_keeps_the_lock() {
        let b = MemBucket::default();
        b.set_store_time(NOW);
        let behind = NOW - time::Duration::minutes(10);
        let laptop = LockDoc {
            acquired_at: rfc3339(behind),
            ..doc("ex-dr", "1", LockState::Running, behind + time::Duration::minutes(2))
        };
        let Acquired::Yes { doc: stored, store, .. } = acquire(&b, FAILOVER_LOCK_KEY, &laptop, false, behind).await.unwrap()
        else {
            panic!("a free lock is taken")
        };
        assert_eq!(stored.lease_expires_at, rfc3339(NOW + time::Duration::minutes(2)), "the store's time plus the lease");
        assert_eq!(stored.acquired_at, rfc3339(NOW));
        assert_eq!(read(&b, FAILOVER_LOCK_KEY).await.unwrap().map(|(d, _)| d), Some(stored));
        assert_eq!(store.map(|c| c.at), Some(NOW));
        // A minute later by the store, a Lambda (its clock the store's) finds it held.
        let later = NOW + time::Duration::minutes(1);
        b.set_store_time(later);
        let lambda = doc("ex-lambda", "1", LockState::Running, later + time::Duration::minutes(2));
        assert!(matches!(acquire(&b, FAILOVER_LOCK_KEY, &lambda, false, later).await.unwrap(), Acquired::Held(_)));
    }

    /// And a lock the store says has expired (its attempt crashed) is taken over by a `dr` 10 minutes behind,
    /// which used to wait for its own clock to pass the expiry; the lock taken holds the store's times.
    #[tokio::test]
    async fn a_taker_whose_clock_is_behind_takes_over_a_lease_the_store_says_has_expired() {
        let b = MemBucket::default();
        b.set_store_time(NOW);
        let crashed = doc("ex-lambda", "1", LockState::Running, NOW + time::Duration::minutes(2));
        acquire(&b, FAILOVER_LOCK_KEY, &crashed, false, NOW).await.unwrap();
        let store = NOW + time::Duration::minutes(3);
        b.set_store_time(store);
        let behind = store - time::Duration::minutes(10);
        let laptop = LockDoc {
            acquired_at: rfc3339(behind),
            ..doc("ex-dr", "1", LockState::Running, behind + time::Duration::minutes(2))
        };
        let Acquired::Yes { doc: stored, took_over, .. } = acquire(&b, FAILOVER_LOCK_KEY, &laptop, false, behind).await.unwrap()
        else {
            panic!("an expired lock is taken over")
        };
        assert_eq!(took_over, Some(crashed));
        assert_eq!(stored.lease_expires_at, rfc3339(store + time::Duration::minutes(2)));
    }

    /// A store that tells no time (the default port) leaves the local clock to judge, as before.
    #[tokio::test]
    async fn without_a_store_clock_the_local_clock_judges() {
        let b = MemBucket::default();
        let a = doc("ex-a", "1", LockState::Running, NOW + time::Duration::minutes(2));
        let Acquired::Yes { doc: stored, store, .. } = acquire(&b, FAILOVER_LOCK_KEY, &a, false, NOW).await.unwrap() else {
            panic!()
        };
        assert_eq!((stored, store), (a, None));
    }

    #[test]
    fn the_store_s_time_later_counts_the_wall_clock_s_time_since_when_longer_than_the_monotonic_one() {
        // A laptop that slept: the monotonic clock stood still, the wall clock went on.
        let c = StoreClock::answered(NOW, NOW - time::Duration::minutes(10));
        assert_eq!(c.now(NOW - time::Duration::minutes(5)) - NOW, time::Duration::minutes(5) + DATE_RESOLUTION);
        // A wall clock stepped back counts nothing less than the monotonic time since.
        assert!(c.now(NOW - time::Duration::minutes(20)) >= NOW);
    }
}
