//! What a replication event means and what on-call should do about it.
//!
//! Every `failureReason` that AWS lists (S3 User Guide, "Amazon S3 replication failure reasons", mirrored in
//! docs/aws-facts.md) is a [`FailureReason`] variant; anything else is [`FailureReason::Unknown`]. Each reason maps,
//! through an exhaustive `match`, to a [`Category`] (and so a [`Severity`]) and an operator action sentence.
//!
//! How the categories were decided:
//! - [`Category::ReplicationBroken`] (critical): the cause is configuration-wide, so *every* object of the rule
//!   (or every large, or every SSE-KMS object, which for Delta tables is the same thing) fails: the role cannot
//!   be assumed, the role lacks a permission every replication needs (`s3:ReplicateObject`,
//!   `s3:GetObjectVersionForReplication`, `s3:GetObjectVersionAcl`), a bucket, a KMS key or the replication
//!   configuration is gone or disabled, versioning is off, or Object Lock is on at the source and off at the
//!   destination (a bucket-level mismatch: every object of a lock-enabled source fails, so critical although
//!   it sounds like an Object Lock detail).
//! - [`Category::DestinationProblem`] (warning): the destination refuses one *aspect* of some objects (delete
//!   markers, ACLs, tags, legal holds, retention): only objects carrying that aspect are affected.
//! - [`Category::SourceObjectProblem`] (warning): the source side of the same (tags, legal holds, retention
//!   cannot be read) and objects not eligible for the rule (storage class, tag filter).
//! - [`Category::ObjectRace`] (info): the object or version changed or vanished before it replicated (Delta
//!   writes and VACUUMs short-lived files), or it was already replicated. Normal background noise.
//! - [`Category::BatchReplicationOnly`] (warning): reasons AWS marks as specific to S3 Batch Replication; seen
//!   here they concern a re-drive job, which then needs fixing.
//! - [`Category::Unclassified`] (warning): a reason not in AWS's list, or a failure without a reason: it pages
//!   once so that a person looks, rather than being dropped.
//! - Event types without a reason: missed threshold = [`Category::ReplicationLag`] (warning), replicated after
//!   threshold = [`Category::LagRecovered`] (info), not tracked = [`Category::NotTracked`] (info).

use super::event::ReplicationEventType;
use serde::{Deserialize, Serialize};

/// How urgent a category is; ordered `Info < Warning < Critical` (the same severity every message carries).
pub use domain::notification::Severity;

/// What kind of trouble an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The rule cannot replicate anything (or any large / encrypted object): configuration-wide, critical.
    ReplicationBroken,
    /// The destination refuses an aspect of some objects (delete markers, ACLs, tags, Object Lock settings).
    DestinationProblem,
    /// The source side refuses an aspect of some objects, or objects are not eligible for the rule.
    SourceObjectProblem,
    /// The object or version was deleted or changed before it replicated, or was already replicated.
    ObjectRace,
    /// A reason AWS documents as specific to S3 Batch Replication (a re-drive job's problem).
    BatchReplicationOnly,
    /// A reason this version does not know, or a failure without a reason.
    Unclassified,
    /// `OperationMissedThreshold`: replication is slower than the S3 RTC threshold.
    ReplicationLag,
    /// `OperationReplicatedAfterThreshold`: an object that was late has replicated.
    LagRecovered,
    /// `OperationNotTracked`: objects are no longer tracked by replication metrics.
    NotTracked,
}

impl Category {
    /// The category's severity.
    pub fn severity(self) -> Severity {
        match self {
            Category::ReplicationBroken => Severity::Critical,
            Category::DestinationProblem
            | Category::SourceObjectProblem
            | Category::BatchReplicationOnly
            | Category::Unclassified
            | Category::ReplicationLag => Severity::Warning,
            Category::ObjectRace | Category::LagRecovered | Category::NotTracked => Severity::Info,
        }
    }

    /// Snake-case name, as serialized (e.g. `replication_broken`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::ReplicationBroken => "replication_broken",
            Category::DestinationProblem => "destination_problem",
            Category::SourceObjectProblem => "source_object_problem",
            Category::ObjectRace => "object_race",
            Category::BatchReplicationOnly => "batch_replication_only",
            Category::Unclassified => "unclassified",
            Category::ReplicationLag => "replication_lag",
            Category::LagRecovered => "lag_recovered",
            Category::NotTracked => "not_tracked",
        }
    }

    /// A total order for "the highest category": severity first, then how much it says about the data at risk.
    pub fn rank(self) -> (Severity, u8) {
        let tie_break = match self {
            Category::ReplicationBroken => 9,
            Category::DestinationProblem => 8,
            Category::SourceObjectProblem => 7,
            Category::ReplicationLag => 6,
            Category::Unclassified => 5,
            Category::BatchReplicationOnly => 4,
            Category::ObjectRace => 3,
            Category::NotTracked => 2,
            Category::LagRecovered => 1,
        };
        (self.severity(), tie_break)
    }

    /// The higher of two categories by [`Category::rank`].
    pub fn max(self, other: Category) -> Category {
        if other.rank() > self.rank() { other } else { self }
    }
}

pub use super::reason::FailureReason;

impl FailureReason {
    /// The reason's category.
    pub fn category(&self) -> Category {
        use FailureReason::*;
        match self {
            AssumeRoleNotPermitted
            | DstBucketNotFound
            | DstBucketObjectLockConfigMissing
            | DstBucketUnversioned
            | DstKmsKeyInvalidState
            | DstKmsKeyNotFound
            | DstMultipartCompleteNotPermitted
            | DstMultipartInitNotPermitted
            | DstMultipartUploadNotPermitted
            | DstPutObjectNotPermitted
            | SrcBucketNotFound
            | SrcBucketReplicationConfigMissing
            | SrcGetAclNotPermitted
            | SrcGetObjectNotPermitted
            | SrcHeadObjectNotPermitted
            | SrcKmsKeyInvalidState => Category::ReplicationBroken,
            DstDelObjNotPermitted
            | DstPutAclNotPermitted
            | DstPutLegalHoldNotPermitted
            | DstPutRetentionNotPermitted
            | DstPutTaggingNotPermitted => Category::DestinationProblem,
            SrcGetLegalHoldNotPermitted | SrcGetRetentionNotPermitted | SrcGetTaggingNotPermitted | SrcObjectNotEligible => {
                Category::SourceObjectProblem
            }
            DstVersionNotFound | SrcKeyNotFound | SrcObjectNotFound | SrcReplicationNotPending | SrcVersionNotFound => {
                Category::ObjectRace
            }
            DstBucketInvalidRegion | DstObjectHardDeleted | InitiateReplicationNotPermitted | SrcBucketInvalidRegion => {
                Category::BatchReplicationOnly
            }
            Unknown(_) => Category::Unclassified,
        }
    }

    /// Whether AWS documents this reason as specific to S3 Batch Replication (`*` in its list).
    pub fn batch_replication_only(&self) -> bool {
        self.category() == Category::BatchReplicationOnly
    }

    /// What on-call should do, in one sentence naming the cause and the fix.
    pub fn action(&self) -> &'static str {
        use FailureReason::*;
        match self {
            AssumeRoleNotPermitted => {
                "the replication role cannot be assumed: check its trust policy (principal s3.amazonaws.com, \
                 sts:AssumeRole), that the role named in the replication rule still exists, and any SCP or \
                 permissions boundary denying it; then re-drive the manifest"
            }
            DstBucketInvalidRegion => {
                "a Batch Replication job expects the destination bucket in another Region: fix the job's or the \
                 rule's destination Region and run the job again"
            }
            DstBucketNotFound => {
                "the destination bucket of the replication rule does not exist: recreate it (versioned) or fix the \
                 rule's destination, then re-drive the manifest"
            }
            DstBucketObjectLockConfigMissing => {
                "the source bucket uses Object Lock but the destination bucket does not: enable Object Lock on the \
                 destination bucket, then re-drive the manifest"
            }
            DstBucketUnversioned => {
                "versioning is off on the destination bucket: enable versioning on it (replication needs it on both \
                 buckets), then re-drive the manifest"
            }
            DstDelObjNotPermitted => {
                "delete markers cannot be replicated: grant s3:ReplicateDelete on the destination bucket to the \
                 replication role (and in the destination bucket policy if cross-account); until then the replica \
                 keeps objects deleted at the source"
            }
            DstKmsKeyInvalidState => {
                "the destination KMS key is disabled or pending deletion: re-enable it (or cancel the deletion) in \
                 the destination Region, then re-drive the manifest"
            }
            DstKmsKeyNotFound => {
                "the destination KMS key named in the replication rule does not exist: fix the rule's replica KMS key \
                 ARN or restore the key, then re-drive the manifest"
            }
            DstMultipartCompleteNotPermitted | DstMultipartInitNotPermitted | DstMultipartUploadNotPermitted => {
                "multipart uploads to the destination are refused, so large objects (Delta data files) do not \
                 replicate: grant s3:ReplicateObject on the destination bucket to the replication role (and in the \
                 destination bucket policy if cross-account), then re-drive the manifest"
            }
            DstObjectHardDeleted => {
                "Batch Replication cannot re-replicate an object whose replica version was permanently deleted from \
                 the destination: copy the object again at the source if the replica needs it"
            }
            DstPutAclNotPermitted => {
                "object ACLs cannot be replicated: grant s3:ReplicateObject on the destination bucket to the \
                 replication role (or enforce bucket-owner Object Ownership), then re-drive the affected objects"
            }
            DstPutLegalHoldNotPermitted => {
                "legal holds cannot be set on replicas: grant s3:PutObjectLegalHold on the destination bucket to the \
                 replication role, then re-drive the affected objects"
            }
            DstPutObjectNotPermitted => {
                "the replication role cannot write to the destination bucket: grant s3:ReplicateObject (and \
                 s3:ObjectOwnerOverrideToBucketOwner if owner override is on), allow it in the destination bucket \
                 policy if cross-account, and allow kms:Decrypt and kms:GenerateDataKey* on the destination KMS key; \
                 then re-drive the manifest"
            }
            DstPutRetentionNotPermitted => {
                "Object Lock retention cannot be set on replicas: grant s3:PutObjectRetention on the destination \
                 bucket to the replication role, then re-drive the affected objects"
            }
            DstPutTaggingNotPermitted => {
                "object tags cannot be replicated: grant s3:ReplicateTags and s3:ReplicateObject on the destination \
                 bucket to the replication role, then re-drive the tagged objects"
            }
            DstVersionNotFound => {
                "the replica version whose tags, ACL or lock settings had to be updated is not in the destination: \
                 if that replica was deleted or never arrived, re-drive the object; otherwise nothing to do"
            }
            InitiateReplicationNotPermitted => {
                "the Batch Replication job's role lacks s3:InitiateReplication on the source bucket: add it to the \
                 job role's policy and run the job again"
            }
            SrcBucketInvalidRegion => {
                "a Batch Replication job runs in another Region than its source bucket: create the job in the \
                 source bucket's Region"
            }
            SrcBucketNotFound => {
                "the source bucket cannot be found: check whether it was deleted or renamed; nothing replicates from \
                 it"
            }
            SrcBucketReplicationConfigMissing => {
                "the source bucket has no replication configuration any more: restore the rule (from IaC), then \
                 re-drive the manifest"
            }
            SrcGetAclNotPermitted => {
                "the replication role cannot read object ACLs at the source: grant s3:GetObjectVersionAcl and make the \
                 bucket owner own the objects (Object Ownership: bucket owner enforced), then re-drive the manifest"
            }
            SrcGetLegalHoldNotPermitted => {
                "the replication role cannot read legal holds at the source: grant s3:GetObjectLegalHold on the \
                 source bucket, then re-drive the affected objects"
            }
            SrcGetObjectNotPermitted => {
                "the replication role cannot read source objects: grant s3:GetObjectVersionForReplication on the \
                 source bucket (and kms:Decrypt on the source KMS key for SSE-KMS objects), check the bucket policy \
                 and SCPs, then re-drive the manifest"
            }
            SrcGetRetentionNotPermitted => {
                "the replication role cannot read Object Lock retention at the source: grant s3:GetObjectRetention on \
                 the source bucket, then re-drive the affected objects"
            }
            SrcGetTaggingNotPermitted => {
                "the replication role cannot read object tags at the source: grant s3:GetObjectVersionTagging on the \
                 source bucket, then re-drive the tagged objects"
            }
            SrcHeadObjectNotPermitted => {
                "the replication role cannot read source object metadata: grant s3:GetObjectVersionForReplication on \
                 the source bucket, then re-drive the manifest"
            }
            SrcKeyNotFound => {
                "the source object was deleted before it replicated (normal for short-lived files such as files \
                 removed by VACUUM): nothing to do unless the key should still exist"
            }
            SrcKmsKeyInvalidState => {
                "the source KMS key is disabled or pending deletion, so SSE-KMS objects cannot be read: re-enable the \
                 key (or cancel the deletion), then re-drive the manifest"
            }
            SrcObjectNotEligible => {
                "the object is not eligible for the rule (storage class such as Glacier, or tags outside the rule's \
                 filter): confirm it is meant to be excluded, otherwise fix the filter or storage class and re-drive"
            }
            SrcObjectNotFound => {
                "the source object no longer exists (removed before it replicated): nothing to do unless it should \
                 still exist"
            }
            SrcReplicationNotPending => "the object was already replicated (no longer pending): nothing to do",
            SrcVersionNotFound => {
                "the source object version was deleted before it replicated: nothing to do unless that version \
                 should still exist"
            }
            Unknown(_) => {
                "S3 reported a failure reason this version does not know: look it up in the S3 User Guide \
                 (replication failure reasons), check the replication rule and role, then re-drive the manifest"
            }
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The meaning of one event: category, severity and the operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// What kind of trouble.
    pub category: Category,
    /// How urgent.
    pub severity: Severity,
    /// What on-call should do.
    pub action: &'static str,
}

/// Action for a failure that carries no `failureReason`.
const FAILED_WITHOUT_REASON: &str = "S3 reported a replication failure without a reason: check the object's replication \
     status (HeadObject x-amz-replication-status), the rule and its role, then re-drive the manifest";

/// Classifies an event from its type and, for failures, its reason.
///
/// The event type decides for the three types that carry no reason (a reason on them is ignored here but
/// still counted by the aggregation); a failure is classified by its reason.
pub fn classify(event_type: ReplicationEventType, reason: Option<&FailureReason>) -> Classification {
    let (category, action) = match (event_type, reason) {
        (ReplicationEventType::OperationFailedReplication, Some(r)) => (r.category(), r.action()),
        (ReplicationEventType::OperationFailedReplication, None) => (Category::Unclassified, FAILED_WITHOUT_REASON),
        (ReplicationEventType::OperationMissedThreshold, _) => (
            Category::ReplicationLag,
            "objects take longer than the S3 RTC threshold (15 minutes) to replicate, so the replica is behind \
             (RPO at risk): watch the rule's ReplicationLatency and OperationsPendingReplication metrics and look \
             for a write burst or very large objects",
        ),
        (ReplicationEventType::OperationReplicatedAfterThreshold, _) => (
            Category::LagRecovered,
            "objects that missed the replication threshold have now replicated: lag is catching up; nothing to do \
             unless missed-threshold events continue",
        ),
        (ReplicationEventType::OperationNotTracked, _) => (
            Category::NotTracked,
            "objects are no longer tracked by replication metrics (metrics or RTC turned off, or the rule changed): \
             re-enable replication metrics on the rule, otherwise failures stop being reported",
        ),
    };
    Classification { category, severity: category.severity(), action }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/aws-facts.md's list, copied by hand (not from `KNOWN`), so a typo in either shows.
    const REFERENCE_LIST: &str = "AssumeRoleNotPermitted, DstBucketInvalidRegion*, DstBucketNotFound, \
        DstBucketObjectLockConfigMissing, DstBucketUnversioned, DstDelObjNotPermitted, DstKmsKeyInvalidState, \
        DstKmsKeyNotFound, DstMultipartCompleteNotPermitted, DstMultipartInitNotPermitted, \
        DstMultipartUploadNotPermitted, DstObjectHardDeleted*, DstPutAclNotPermitted, DstPutLegalHoldNotPermitted, \
        DstPutObjectNotPermitted, DstPutRetentionNotPermitted, DstPutTaggingNotPermitted, DstVersionNotFound, \
        InitiateReplicationNotPermitted*, SrcBucketInvalidRegion*, SrcBucketNotFound, \
        SrcBucketReplicationConfigMissing, SrcGetAclNotPermitted, SrcGetLegalHoldNotPermitted, \
        SrcGetObjectNotPermitted, SrcGetRetentionNotPermitted, SrcGetTaggingNotPermitted, SrcHeadObjectNotPermitted, \
        SrcKeyNotFound, SrcKmsKeyInvalidState, SrcObjectNotEligible, SrcObjectNotFound, SrcReplicationNotPending, \
        SrcVersionNotFound";

    fn reference() -> Vec<(&'static str, bool)> {
        REFERENCE_LIST
            .split(',')
            .map(str::trim)
            .map(|s| match s.strip_suffix('*') {
                Some(name) => (name, true),
                None => (s, false),
            })
            .collect()
    }

    #[test]
    fn every_listed_reason_is_known_with_an_action() {
        let list = reference();
        assert_eq!(list.len(), 34);
        assert_eq!(FailureReason::KNOWN.len(), 34);
        for (name, batch_only) in list {
            let r = FailureReason::parse(name);
            assert!(!matches!(r, FailureReason::Unknown(_)), "{name} parsed as Unknown");
            assert_eq!(r.as_str(), name);
            assert!(r.action().len() > 40, "{name} has no real action");
            assert_eq!(r.batch_replication_only(), batch_only, "{name}: batch-only marker");
            assert!(FailureReason::KNOWN.contains(&name));
        }
    }

    #[test]
    fn deliberate_categories() {
        let cat = |s: &str| FailureReason::parse(s).category();
        assert_eq!(cat("AssumeRoleNotPermitted"), Category::ReplicationBroken);
        assert_eq!(cat("DstPutObjectNotPermitted"), Category::ReplicationBroken);
        assert_eq!(cat("DstKmsKeyNotFound"), Category::ReplicationBroken);
        assert_eq!(cat("SrcKmsKeyInvalidState"), Category::ReplicationBroken);
        assert_eq!(cat("DstBucketObjectLockConfigMissing"), Category::ReplicationBroken);
        assert_eq!(cat("DstMultipartInitNotPermitted"), Category::ReplicationBroken);
        assert_eq!(cat("DstPutLegalHoldNotPermitted"), Category::DestinationProblem);
        assert_eq!(cat("DstDelObjNotPermitted"), Category::DestinationProblem);
        assert_eq!(cat("SrcGetTaggingNotPermitted"), Category::SourceObjectProblem);
        assert_eq!(cat("SrcObjectNotEligible"), Category::SourceObjectProblem);
        assert_eq!(cat("SrcKeyNotFound"), Category::ObjectRace);
        assert_eq!(cat("DstVersionNotFound"), Category::ObjectRace);
        assert_eq!(cat("SrcReplicationNotPending"), Category::ObjectRace);
        assert_eq!(cat("DstObjectHardDeleted"), Category::BatchReplicationOnly);
        assert_eq!(cat("SomethingNew"), Category::Unclassified);
        assert_eq!(Category::ReplicationBroken.severity().as_str(), "critical");
        assert_eq!(Category::DestinationProblem.severity().as_str(), "warning");
        assert_eq!(Category::ObjectRace.severity().as_str(), "info");
    }

    #[test]
    fn unknown_and_padded_reasons() {
        assert_eq!(FailureReason::parse("DstVersionNotFound "), FailureReason::DstVersionNotFound);
        let u = FailureReason::parse("BrandNewReason");
        assert_eq!(u, FailureReason::Unknown("BrandNewReason".into()));
        assert_eq!(u.as_str(), "BrandNewReason");
        assert!(u.action().contains("does not know"));
    }

    #[test]
    fn event_types_without_reason() {
        let c = classify(ReplicationEventType::OperationMissedThreshold, None);
        assert_eq!((c.category, c.severity), (Category::ReplicationLag, Severity::Warning));
        let c = classify(ReplicationEventType::OperationReplicatedAfterThreshold, None);
        assert_eq!((c.category, c.severity), (Category::LagRecovered, Severity::Info));
        let c = classify(ReplicationEventType::OperationNotTracked, None);
        assert_eq!((c.category, c.severity), (Category::NotTracked, Severity::Info));
        let c = classify(ReplicationEventType::OperationFailedReplication, None);
        assert_eq!((c.category, c.severity), (Category::Unclassified, Severity::Warning));
        let role = FailureReason::AssumeRoleNotPermitted;
        let c = classify(ReplicationEventType::OperationFailedReplication, Some(&role));
        assert_eq!(c.severity, Severity::Critical);
        assert!(c.action.starts_with("the replication role cannot be assumed: check its trust policy"));
    }

    #[test]
    fn highest_category_order() {
        assert_eq!(Category::ObjectRace.max(Category::ReplicationBroken), Category::ReplicationBroken);
        assert_eq!(Category::ReplicationLag.max(Category::DestinationProblem), Category::DestinationProblem);
        assert_eq!(Category::NotTracked.max(Category::LagRecovered), Category::NotTracked);
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
    }
}
