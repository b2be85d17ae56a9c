//! The record's writer: compare-and-swap writes that recognize a lost write of their own, never write a terminal
//! record out of its end, and merge another writer's pages (see [`Recorder`]).

use super::{ExecutionRecord, ExecutionState, record_key};
use domain::primitives::rfc3339;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, WriteCondition};
use time::OffsetDateTime;

/// The record plus the ETag it was last written at: every write is a compare-and-swap on it.
///
/// Each `Recorder` writes with a token of its own (`ExecutionRecord::writer`), so that after a conflict it can
/// tell one of its own writes whose answer was lost (a timeout after S3 applied it: its in-memory record is newer)
/// from another writer's (`report_recovery`, a joined alarm, `check`, another attempt): only the former is adopted
/// without a decision. A record stored in a terminal state is never written out of it.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The record as we believe it is stored.
    pub record: ExecutionRecord,
    etag: Option<String>,
    /// The state stored at `etag` (`None`: not written yet).
    stored_state: Option<ExecutionState>,
    writer: String,
}

/// What a writer holding the lock found after a conflicting write (see [`Recorder::save_or_reconcile`]).
#[derive(Debug)]
pub enum Reconciled {
    /// Written (after adopting its own lost write, or merging another writer's pages).
    Saved,
    /// The stored record ended meanwhile (a recovery, a cancel, another attempt): it is left as it is.
    Ended(Box<Recorder>),
}

impl Recorder {
    /// A record not yet written.
    pub fn new(record: ExecutionRecord) -> Self {
        Recorder { record, etag: None, stored_state: None, writer: domain::primitives::new_token() }
    }

    /// The ETag the record was last read or written at (`None`: not written yet).
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// A record read from the bucket at `etag`.
    pub fn existing(record: ExecutionRecord, etag: String) -> Self {
        let stored_state = Some(record.state);
        Recorder { record, etag: Some(etag), stored_state, writer: domain::primitives::new_token() }
    }

    /// Whether the record stored at our ETag is in a terminal state.
    pub fn stored_terminal(&self) -> bool {
        self.stored_state.is_some_and(ExecutionState::is_terminal)
    }

    /// The future of writing the current state (create-only the first time, then compare-and-swap); run it
    /// beside the next step and hand its ETag to [`Recorder::saved`]. A write that would move a record stored in
    /// a terminal state out of it fails as a conflict without being sent.
    pub fn save<'a, B: ControlBucket>(
        &self,
        bucket: &'a B,
        now: OffsetDateTime,
    ) -> impl std::future::Future<Output = Result<String, StoreError>> + Send + 'a {
        let mut record = self.record.clone();
        record.updated_at = rfc3339(now);
        record.writer = Some(self.writer.clone());
        let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        let key = record_key(&record.execution_id);
        let condition = match &self.etag {
            None => WriteCondition::IfAbsent,
            Some(e) => WriteCondition::IfMatch(e.clone()),
        };
        let leaves_terminal = self.stored_terminal() && self.stored_state != Some(self.record.state);
        async move {
            if leaves_terminal {
                return Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key });
            }
            bucket.put(&key, body, "application/json", condition).await
        }
    }

    /// Notes the ETag of a successful save.
    pub fn saved(&mut self, etag: String, now: OffsetDateTime) {
        self.record.updated_at = rfc3339(now);
        self.record.writer = Some(self.writer.clone());
        self.etag = Some(etag);
        self.stored_state = Some(self.record.state);
    }

    /// Saves now and waits. A conflict caused by one of this writer's own writes whose answer was lost is
    /// resolved by writing again on top of it (after checking, by re-reading, that it is ours); any other
    /// conflict is returned: the caller re-reads and decides again.
    pub async fn save_now<B: ControlBucket>(&mut self, bucket: &B, now: OffsetDateTime) -> Result<(), StoreError> {
        match self.save(bucket, now).await {
            Ok(etag) => {
                self.saved(etag, now);
                Ok(())
            }
            Err(e @ StoreError::Conflict { .. }) => {
                if !self.adopt_own_lost_write(bucket).await? {
                    return Err(e);
                }
                let etag = self.save(bucket, now).await?;
                self.saved(etag, now);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// After a conflict: re-reads the record and, when the stored version was written by this very writer (a
    /// write of ours whose answer was lost), takes its ETag: our record is newer. Never takes another writer's.
    pub async fn adopt_own_lost_write<B: ControlBucket>(&mut self, bucket: &B) -> Result<bool, StoreError> {
        let Some(stored) = read(bucket, &self.record.execution_id).await? else { return Ok(false) };
        if stored.record.writer.as_deref() != Some(self.writer.as_str()) || stored.etag == self.etag {
            return Ok(false);
        }
        self.etag = stored.etag;
        self.stored_state = Some(stored.record.state);
        Ok(true)
    }

    /// Takes in what another writer stored (`stored`, just read) so that the next write is a compare-and-swap on
    /// it and loses nothing of it: its pages sent and owed, its notes. When the stored record says the alarm
    /// recovered (its `OK` sent or owed), the `ALARM` pages still owed here are dropped: they must never go out
    /// after the recovery.
    pub fn merge_from(&mut self, stored: Recorder) {
        let mut messages = stored.record.messages.clone();
        for m in &self.record.messages {
            if !messages.contains(m) {
                messages.push(m.clone());
            }
        }
        // Only a waiting record: a recovery then withdraws its approval page (a running one's stalls still page).
        let recovered = stored.record.recovered() && stored.record.state == ExecutionState::AwaitingApproval;
        // The stored incident was resolved by another attempt (its last page an `OK`: the promotion verified and
        // announced): a stall this writer decided to page on an older read re-opens nothing, as `stop` decides on
        // a resolved record (its `ALARM` would follow the `OK`, and nothing would resolve it again).
        let resolved = stored.record.resolved();
        let mut owed = stored.record.owed.clone();
        for o in &self.record.owed {
            let sent = messages.iter().any(|m| m.channel == o.channel && m.event_type == o.event_type);
            let stale_alarm = (recovered || resolved && o.event_type.contains(".stalled_")) && !o.resolves();
            if !sent && !stale_alarm && !owed.iter().any(|x| x.channel == o.channel && x.event_type == o.event_type) {
                owed.push(o.clone());
            }
        }
        for n in &stored.record.notes {
            if !self.record.notes.contains(n) {
                self.record.notes.push(n.clone());
            }
        }
        self.record.messages = messages;
        self.record.owed = owed;
        // A delivery without the lock may be publishing an `ALARM` (or have died after it): its mark stays.
        self.record.unlocked_alarm_since =
            self.record.unlocked_alarm_since.take().max(stored.record.unlocked_alarm_since.clone());
        self.etag = stored.etag;
        self.stored_state = stored.stored_state;
    }

    /// Saves for a writer that holds the lock: on a conflict with another writer, re-reads; a record that ended
    /// meanwhile is left as it is ([`Reconciled::Ended`]); otherwise its pages are merged in and the write is tried
    /// again (a few times).
    pub async fn save_or_reconcile<B: ControlBucket>(
        &mut self,
        bucket: &B,
        now: OffsetDateTime,
    ) -> Result<Reconciled, StoreError> {
        let mut last = None;
        for _ in 0..4 {
            match self.save_now(bucket, now).await {
                Ok(()) => return Ok(Reconciled::Saved),
                Err(e @ StoreError::Conflict { .. }) => {
                    let Some(stored) = read(bucket, &self.record.execution_id).await? else { return Err(e) };
                    if stored.record.state.is_terminal() {
                        return Ok(Reconciled::Ended(Box::new(stored)));
                    }
                    self.merge_from(stored);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Conflict {
            service: "S3",
            operation: "PutObject",
            target: record_key(&self.record.execution_id),
        }))
    }
}

/// Reads a record, if it exists.
pub async fn read(bucket: &impl ControlBucket, execution_id: &str) -> Result<Option<Recorder>, StoreError> {
    let Some(o) = bucket.get(&record_key(execution_id)).await? else { return Ok(None) };
    let record = serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{} is not an execution record: {e}", record_key(execution_id)),
    })?;
    Ok(Some(Recorder::existing(record, o.etag)))
}
