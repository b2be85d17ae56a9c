//! A Structured Streaming checkpoint on the replica against its Delta sink on the replica.
//!
//! On restart a stream reads its newest `offsets/N`: when `commits/N` exists it starts batch N+1, else it runs
//! batch N again. So every batch up to `max(newest commit, newest offset - 1)` counts as done. The Delta sink
//! records each batch it wrote as a `txn` action (app id: the query's id from the checkpoint's `metadata`,
//! version: the batch id) and skips a batch it already has. A checkpoint ahead of its sink's consistent version
//! makes the restarted stream skip the batches in between: they are never written.

use serde::Deserialize;

/// What the replica's checkpoint directory shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCheckpoint {
    /// The query's id (`metadata`'s `id`): the app id of the sink's `txn` actions.
    pub query_id: Option<String>,
    /// The newest batch in `offsets/`.
    pub newest_offset: Option<u64>,
    /// The newest batch in `commits/`.
    pub newest_commit: Option<u64>,
}

/// The batch id of a checkpoint file (`offsets/12`, `commits/12`), relative to the checkpoint's root: the
/// directory and the batch; temporary and checksum files are not batches.
pub fn batch_file(rel: &str) -> Option<(&str, u64)> {
    let (dir, name) = rel.split_once('/')?;
    if !(dir == "offsets" || dir == "commits") || name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((dir, name.parse().ok()?))
}

#[derive(Deserialize)]
struct Metadata {
    id: String,
}

impl StreamCheckpoint {
    /// From the names under the checkpoint's root and its `metadata` file (when the replica has it).
    pub fn from_listing<'a>(names: impl IntoIterator<Item = &'a str>, metadata: Option<&[u8]>) -> StreamCheckpoint {
        let mut c = StreamCheckpoint::default();
        for (dir, batch) in names.into_iter().filter_map(batch_file) {
            let slot = if dir == "offsets" { &mut c.newest_offset } else { &mut c.newest_commit };
            *slot = (*slot).max(Some(batch));
        }
        c.query_id = metadata
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(|t| t.lines().find(|l| !l.trim().is_empty()).map(str::to_owned))
            .and_then(|l| serde_json::from_str::<Metadata>(&l).ok())
            .map(|m| m.id);
        c
    }

    /// The newest batch a restart treats as done.
    pub fn done(&self) -> Option<u64> {
        self.newest_commit.max(self.newest_offset.and_then(|o| o.checked_sub(1)))
    }
}

/// Whether a restart from the replica is safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamVerdict {
    /// The checkpoint is not ahead of its sink.
    Safe {
        /// The newest batch the checkpoint treats as done.
        done: Option<u64>,
        /// The sink's newest batch.
        sink: Option<i64>,
    },
    /// The checkpoint is ahead: the batches after `sink` up to `done` would be skipped.
    Ahead {
        /// The newest batch the checkpoint treats as done.
        done: u64,
        /// The sink's newest batch (`None`: no batch of this query is in the sink).
        sink: Option<i64>,
        /// Roll the checkpoint back to this batch (delete `offsets/` and `commits/` after it); `None`: delete
        /// them all (the stream starts from its first batch).
        roll_back_to: Option<u64>,
    },
    /// It cannot be told.
    Unknown(String),
}

/// Judges a replica's checkpoint against the sink's `txn` version for the query (`sink`, at the sink's
/// consistent version).
pub fn judge(checkpoint: &StreamCheckpoint, sink: Option<i64>) -> StreamVerdict {
    let Some(done) = checkpoint.done() else { return StreamVerdict::Safe { done: None, sink } };
    if checkpoint.query_id.is_none() {
        return StreamVerdict::Unknown(
            "the replica's checkpoint has batches but no readable metadata file (the query id names the sink's txn)".into(),
        );
    }
    let sink_batch = sink.and_then(|s| u64::try_from(s).ok());
    match sink_batch {
        Some(s) if s >= done => StreamVerdict::Safe { done: Some(done), sink },
        _ => StreamVerdict::Ahead { done, sink, roll_back_to: sink_batch },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_ahead_of_its_sink_is_rolled_back_to_the_sink() {
        let meta = br#"{"id":"5f1b9c3e-0000-4000-8000-000000000001"}"#;
        let names = [
            "metadata",
            "offsets/0",
            "offsets/1",
            "offsets/2",
            "offsets/3",
            "commits/0",
            "commits/1",
            "commits/2",
            "offsets/.3.tmp",
            "commits/2.crc",
        ];
        let c = StreamCheckpoint::from_listing(names, Some(meta));
        assert_eq!((c.newest_offset, c.newest_commit, c.done()), (Some(3), Some(2), Some(2)));
        assert_eq!(c.query_id.as_deref(), Some("5f1b9c3e-0000-4000-8000-000000000001"));
        assert_eq!(judge(&c, Some(2)), StreamVerdict::Safe { done: Some(2), sink: Some(2) });
        assert_eq!(judge(&c, Some(0)), StreamVerdict::Ahead { done: 2, sink: Some(0), roll_back_to: Some(0) });
        assert_eq!(judge(&c, None), StreamVerdict::Ahead { done: 2, sink: None, roll_back_to: None });
        // offsets/4 without commits/3 (replicated out of order): a restart runs 4 again and treats 3 as done.
        let c = StreamCheckpoint::from_listing(["offsets/4", "commits/2"], Some(meta));
        assert_eq!(c.done(), Some(3));
        assert!(matches!(judge(&StreamCheckpoint::from_listing(["commits/1"], None), Some(5)), StreamVerdict::Unknown(_)));
        assert_eq!(judge(&StreamCheckpoint::default(), None), StreamVerdict::Safe { done: None, sink: None });
    }
}
