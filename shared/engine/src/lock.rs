//! The single-flight lock of failover executions: one object under `locks/` in the control bucket.
//!
//! Taken with S3's create-only write (`If-None-Match: *`); a lock whose lease has expired, or one this same
//! execution left behind on purpose (stopped on an error, or waiting for approval), is taken over only by
//! compare-and-swap on its ETag (`If-Match`), so two takers cannot both win.

use crate::error::StoreError;
use crate::ports::{ControlBucket, WriteCondition, Written};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
        /// The previous holder, when taken over.
        took_over: Option<LockDoc>,
    },
    /// Someone else (or another attempt of this execution) holds it.
    Held(LockDoc),
}

/// Why a takeover of the current holder's lock is allowed for `ours`.
fn may_take_over(current: &LockDoc, ours: &LockDoc, approving: bool, now: OffsetDateTime) -> bool {
    if current.expired(now) {
        return true;
    }
    current.execution_id == ours.execution_id
        && (current.state == LockState::Stopped || (current.state == LockState::AwaitingApproval && approving))
}

/// Tries to take the lock for `ours`.
pub async fn acquire(
    bucket: &impl ControlBucket,
    key: &str,
    ours: &LockDoc,
    approving: bool,
    now: OffsetDateTime,
) -> Result<Acquired, StoreError> {
    let body = serde_json::to_vec(ours).unwrap_or_default();
    // A few rounds: the lock can be released or taken between our write and our read.
    for _ in 0..3 {
        match bucket.put(key, body.clone(), "application/json", WriteCondition::IfAbsent).await {
            Ok(etag) => return Ok(Acquired::Yes { etag, took_over: None }),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        let Some(current) = bucket.get(key).await? else { continue };
        let doc: LockDoc = serde_json::from_slice(&current.body).unwrap_or_else(|e| LockDoc {
            execution_id: "unreadable-lock".into(),
            attempt_id: String::new(),
            state: LockState::Running,
            acquired_at: String::new(),
            lease_expires_at: String::new(),
            holder: format!("unreadable lock object ({e})"),
        });
        if doc.execution_id == ours.execution_id && doc.attempt_id == ours.attempt_id {
            // Our own earlier write, whose answer was lost (a timeout after S3 applied it): it is ours.
            return Ok(Acquired::Yes { etag: current.etag, took_over: None });
        }
        if !may_take_over(&doc, ours, approving, now) {
            return Ok(Acquired::Held(doc));
        }
        match bucket.put(key, body.clone(), "application/json", WriteCondition::IfMatch(current.etag)).await {
            Ok(etag) => return Ok(Acquired::Yes { etag, took_over: Some(doc) }),
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
    let Some(o) = bucket.get(key).await? else { return Ok(None) };
    let doc = serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{key} is not a lock document: {e}"),
    })?;
    Ok(Some((doc, o.etag)))
}

/// Deletes the lock if the lock read now satisfies `releasable`, conditional on that read's ETag (`If-Match`), so a
/// lock taken over between the read and the delete is never deleted; returns whether it deleted it.
async fn delete_if(
    bucket: &impl ControlBucket,
    key: &str,
    releasable: impl FnOnce(&LockDoc) -> bool,
) -> Result<bool, StoreError> {
    match read(bucket, key).await? {
        Some((doc, etag)) if releasable(&doc) => match bucket.delete_if_match(key, &etag).await {
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
    delete_if(bucket, key, |doc| doc.execution_id == execution_id && (doc.state != LockState::Running || doc.expired(now))).await
}

/// Releases the lock of an execution whose record has ended (cancelled), whatever the lock's state or lease:
/// no attempt of an ended execution may work under it (an attempt that took it meanwhile finds the record ended
/// at its fence and stops without writing), so a `running` lock left by the ending's own attempt (its release
/// failed) must not block every other execution until its lease expires. Conditional on the ETag read.
pub async fn release_ended(bucket: &impl ControlBucket, key: &str, execution_id: &str) -> Result<bool, StoreError> {
    delete_if(bucket, key, |doc| doc.execution_id == execution_id).await
}

/// Releases the lock if this very attempt still holds it; returns whether it did. An attempt whose lock was
/// taken over (its lease expired) never deletes the lock of the attempt that took it over.
pub async fn release_attempt(
    bucket: &impl ControlBucket,
    key: &str,
    execution_id: &str,
    attempt_id: &str,
) -> Result<bool, StoreError> {
    delete_if(bucket, key, |doc| doc.execution_id == execution_id && doc.attempt_id == attempt_id).await
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
    let Some((doc, etag)) = read(bucket, key).await? else { return Ok(None) };
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
    use crate::ports::memory::MemBucket;
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
            Acquired::Yes { etag: "\"etag-2\"".into(), took_over: Some(a) }
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
}
