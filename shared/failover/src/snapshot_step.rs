//! Round trip 3, the snapshot step, and its halves (collect the files, then write and record them), which an
//! approval's preparation shares.

use crate::Attempt;
use crate::Engine;
use crate::record::{ExecutionRecord, Step, StepOutcome};
use crate::rpo::rpo_estimate;
use crate::runner::{Run, StepEnd};
use domain::notification::{PageState, Severity};
use dr_ports::error::StoreError;
use dr_ports::snapshot;
use dr_ports::snapshot::SnapshotContext;
use dr_ports::{Channel, Clock, ControlBucket, Notifier, Parameter, ParameterStore};
use futures_util::future::try_join_all;
use time::OffsetDateTime;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Every snapshot source's files over `tree` (`patient`: wait for the slow sources, as `snapshot` does).
    pub async fn snapshot_files_of(&self, tree: &[Parameter], patient: bool) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        let ctx = SnapshotContext { tree, prefix: self.settings.prefix.as_str(), now: self.now(), patient };
        let mut files = vec![snapshot::tree_file(tree)];
        files.extend(snapshot::document_files(tree, self.settings.prefix.as_str()));
        let extra = try_join_all(self.sources.iter().map(|s| s.collect(&ctx))).await?;
        files.extend(extra.into_iter().flatten());
        Ok(files)
    }

    pub(super) async fn snapshot_files(&self, attempt: &Attempt) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        match &attempt.prefetched {
            Some(files) => Ok(files.clone()),
            None => self.snapshot_files_of(&attempt.tree, false).await,
        }
    }

    /// The snapshot's files, with what the record keeps of them (the RPO estimate, the workspaces' exports): the
    /// snapshot step's first half, shared with an approval's preparation.
    pub(super) async fn collect_snapshot(
        &self,
        rec: &mut ExecutionRecord,
        attempt: &Attempt,
    ) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        let files = self.snapshot_files(attempt).await?;
        rec.rpo_estimate = Some(rpo_estimate(&files));
        rec.workspaces = dr_workspace::from_snapshot(&files);
        Ok(files)
    }

    /// Writes the snapshot of execution `id` (`snapshots/{id}/`, its manifest last) and answers the manifest's key.
    pub(super) async fn write_snapshot(
        &self,
        id: &str,
        files: Vec<snapshot::SnapshotFile>,
        start: OffsetDateTime,
    ) -> Result<String, StoreError> {
        snapshot::write(&self.bucket, &domain::layout::snapshot_folder(id), id, files, start).await
    }

    /// The snapshot step's second half, shared with an approval's preparation: the written snapshot's manifest
    /// and the step, done, in the record.
    pub(super) fn snapshot_recorded(&self, rec: &mut ExecutionRecord, manifest: String, start: OffsetDateTime, attempt_id: &str) {
        let end = self.now();
        rec.snapshot_manifest_key = Some(manifest.clone());
        rec.steps.push(self.step(Step::Snapshot, StepOutcome::Done, start, end, attempt_id, Some(manifest)));
    }

    /// Round trip 3: the snapshot, beside the record, which holds the first page as owed: the page goes out
    /// only once a record exists to resolve it (beside the promotion), and never blocks anything.
    pub(super) async fn snapshot_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        if self.promoted_earlier(run) {
            let detail = Some("the promotion of an earlier attempt is live: its snapshot preceded it".into());
            let step = self.step(Step::Snapshot, StepOutcome::AlreadyDone, start, start, &run.attempt.id, detail);
            run.rec.record.steps.push(step);
            return StepEnd::Next;
        }
        // The files first (collected while the lock was taken): the started page carries their RPO.
        let files = self.collect_snapshot(&mut run.rec.record, &run.attempt).await;
        let estimate = files.as_ref().ok().and(run.rec.record.rpo_estimate.as_ref());
        let rpo = estimate.map(|e| format!(" RPO: {}.", crate::report::rpo_summary(e)));
        let rec = &mut run.rec.record;
        if !rec.sent(Channel::Paging, &format!("{}.awaiting_approval", rec.kind)) {
            let page = self.page(
                rec,
                "started",
                PageState::Alarm,
                Severity::Critical,
                format!(
                    "DR {}: {} toward the {} site started ({}). Decision: {}.{}",
                    self.settings.environment,
                    rec.kind,
                    rec.target,
                    rec.reason,
                    rec.decision.reasons.join("; "),
                    rpo.unwrap_or_default()
                ),
            );
            self.owe_page(rec, "started", &page);
        }
        let files = match files {
            Ok(f) => f,
            Err(source) => return StepEnd::Stop(source),
        };
        let written = self.beside(&mut run.rec, start, self.write_snapshot(&id, files, start)).await;
        let manifest = match written {
            Ok(m) => m,
            Err(source) => return StepEnd::Stop(source),
        };
        self.snapshot_recorded(&mut run.rec.record, manifest, start, &run.attempt.id);
        StepEnd::Next
    }
}
