//! The fence of activation's calls: before each wave, the lock's lease renewed by compare-and-swap and judged by
//! the store's clock, and `{prefix}/active` read again.
//!
//! Why the store's clock: the lease is a time others judge with theirs (a Lambda's clock is the store's, near
//! enough); a break-glass `dr` whose clock is hours behind wrote an expiry already past for everyone else, and
//! one hours ahead an expiry nobody else would ever see pass. So the expiry is written as the store's time plus
//! the lease: from the last renewal's `Date` (plus the time elapsed on the monotonic clock since), or, before
//! any, the `Date` of the write that took the lock (the local clock when the store told none), rewritten at once
//! from the `Date` when that first guess is more than a quarter lease off. The compare-and-swap on the lock's
//! ETag is the proof of possession: it fails when anyone took the lock over (or took and released it) since this
//! attempt last wrote it, whatever any clock says.
//!
//! Why per wave rather than per call: the calls of one wave are sent together right after their fence, so a
//! fence per call would only add round trips (an S3 write and an SSM read per call) without shrinking the
//! window, which is one call's time either way. Two lanes asking at once share one check: a check started
//! after a lane asked is as fresh for it as its own.

use crate::{Engine, Held};
use domain::primitives::rfc3339;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::LockDoc;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use time::OffsetDateTime;
use tokio::time::Instant;

/// The lock as the fence holds it, and the store's clock as last answered.
pub(super) struct FenceState {
    /// The lock, at its latest ETag.
    pub(super) held: Held,
    /// The store's time at the last renewal and the monotonic instant its answer came.
    store: Option<(OffsetDateTime, Instant)>,
    /// When the last check that passed was started.
    checked: Option<Instant>,
}

impl FenceState {
    /// The fence of an attempt holding `held`.
    pub(super) fn new(held: Held) -> FenceState {
        // The store's clock as the lock was taken: the first renewal's expiry is counted from it, not guessed.
        let store = held.store.map(|c| (c.at, c.seen));
        FenceState { held, store, checked: None }
    }
}

/// Why a wave may not go out.
pub(super) enum Halt {
    /// The lock was taken over, or could not be renewed: stop, leaving the lock to its holder.
    Lost(StoreError),
    /// `{prefix}/active` names another execution: the rest of the plan is not made.
    Superseded(String),
    /// A store error (the record's save, the read of `active`): stop; a later attempt resumes.
    Stop(StoreError),
}

/// The store's time now, estimated from its last answer.
fn store_now(store: Option<(OffsetDateTime, Instant)>) -> Option<OffsetDateTime> {
    store.map(|(t, at)| t + at.elapsed())
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// The fence before a wave asked for at `asked`: passes at once if a check started since then passed (the
    /// other lane's); else renews the lease and reads `active`, side by side.
    pub(super) async fn fence_wave(
        &self,
        fence: &tokio::sync::Mutex<FenceState>,
        execution_id: &str,
        asked: Instant,
    ) -> Result<(), Halt> {
        let mut f = fence.lock().await;
        if f.checked.is_some_and(|c| c >= asked) {
            return Ok(());
        }
        let started = Instant::now();
        let (renewed, active) = tokio::join!(self.renew_by_store(&f.held, f.store), self.still_active(execution_id));
        let (held, store) = renewed.map_err(Halt::Lost)?;
        f.held = held;
        f.store = store.or(f.store);
        match active {
            Ok(None) => {}
            Ok(Some(why)) => return Err(Halt::Superseded(why)),
            Err(e) => return Err(Halt::Stop(e)),
        }
        f.checked = Some(started);
        Ok(())
    }

    /// Renews the lease by compare-and-swap, its expiry the store's time plus the lease (see the module's
    /// documentation); answers the lock at its new ETag and the store's clock as this renewal saw it.
    pub(super) async fn renew_by_store(
        &self,
        held: &Held,
        store: Option<(OffsetDateTime, Instant)>,
    ) -> Result<(Held, Option<(OffsetDateTime, Instant)>), StoreError> {
        let lease = self.settings.lock_lease;
        let guess = store_now(store).unwrap_or_else(|| self.now()) + lease;
        let (held, seen) = self.renew_once(held, guess).await?;
        match store_now(seen) {
            Some(t) if (guess - (t + lease)).abs() > lease / 4 => {
                // The first guess came from a clock the store disagrees with: written again from the store's.
                let (held, again) = self.renew_once(&held, t + lease).await?;
                Ok((held, again.or(seen)))
            }
            _ => Ok((held, seen)),
        }
    }

    /// One renewal to `expiry`, conditional on the lock's ETag.
    async fn renew_once(
        &self,
        held: &Held,
        expiry: OffsetDateTime,
    ) -> Result<(Held, Option<(OffsetDateTime, Instant)>), StoreError> {
        let doc = LockDoc { lease_expires_at: rfc3339(expiry), ..held.doc.clone() };
        let written = lock::update_dated(&self.bucket, &self.settings.lock_key, &doc, &held.etag).await?;
        let store = written.store_time.map(|t| lock::StoreClock::answered(t, self.now())).or(held.store);
        Ok((Held { doc, etag: written.etag, store }, written.store_time.map(|t| (t, Instant::now()))))
    }
}
