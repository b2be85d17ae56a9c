//! The `failureReason`s of S3 replication events: every reason AWS lists (S3 User Guide, "Amazon S3 replication
//! failure reasons", mirrored in docs/aws-facts.md) as a [`FailureReason`] variant, anything else kept verbatim.
//! What each means for on-call is [`super::classify`]'s (an `impl` there), so that parsing an event
//! ([`super::event`]) does not depend on classifying it.

/// Generates [`FailureReason`] with its AWS spelling, so the list of names is written once.
macro_rules! failure_reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A `failureReason` of an `OperationFailedReplication` event (AWS's list; `*` = Batch Replication only).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FailureReason {
            $($(#[$doc])* $name,)*
            /// A reason not in AWS's documented list (kept verbatim).
            Unknown(String),
        }

        impl FailureReason {
            /// Every reason AWS documents, spelled as in the events.
            pub const KNOWN: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Parses a `failureReason` value (surrounding whitespace ignored); never fails.
            pub fn parse(s: &str) -> FailureReason {
                match s.trim() {
                    $(stringify!($name) => FailureReason::$name,)*
                    other => FailureReason::Unknown(other.to_owned()),
                }
            }

            /// The reason as AWS spells it (an unknown reason verbatim).
            pub fn as_str(&self) -> &str {
                match self {
                    $(FailureReason::$name => stringify!($name),)*
                    FailureReason::Unknown(s) => s,
                }
            }
        }
    };
}

failure_reasons! {
    /// S3 cannot assume the replication role.
    AssumeRoleNotPermitted,
    /// `*` The destination bucket is not in the Region the Batch Operations job expects.
    DstBucketInvalidRegion,
    /// The destination bucket does not exist.
    DstBucketNotFound,
    /// The source has Object Lock enabled, the destination does not.
    DstBucketObjectLockConfigMissing,
    /// Versioning is not enabled on the destination bucket.
    DstBucketUnversioned,
    /// Delete markers cannot be replicated (`s3:ReplicateDelete`).
    DstDelObjNotPermitted,
    /// The destination KMS key is not in a usable state.
    DstKmsKeyInvalidState,
    /// The destination KMS key does not exist.
    DstKmsKeyNotFound,
    /// Multipart uploads cannot be completed at the destination.
    DstMultipartCompleteNotPermitted,
    /// Multipart uploads cannot be initiated at the destination.
    DstMultipartInitNotPermitted,
    /// Parts cannot be uploaded at the destination.
    DstMultipartUploadNotPermitted,
    /// `*` The replica version was permanently deleted; Batch Replication cannot re-replicate it.
    DstObjectHardDeleted,
    /// ACLs cannot be replicated.
    DstPutAclNotPermitted,
    /// Legal holds cannot be put on replicas (`s3:PutObjectLegalHold`).
    DstPutLegalHoldNotPermitted,
    /// Objects cannot be written to the destination (`s3:ReplicateObject`, KMS key policy).
    DstPutObjectNotPermitted,
    /// Retention cannot be put on replicas (`s3:PutObjectRetention`).
    DstPutRetentionNotPermitted,
    /// Tags cannot be replicated.
    DstPutTaggingNotPermitted,
    /// The replica version whose metadata had to be replicated is not in the destination.
    DstVersionNotFound,
    /// `*` The Batch Operations job lacks `s3:InitiateReplication`.
    InitiateReplicationNotPermitted,
    /// `*` The source bucket is not in the Region the Batch Operations job expects.
    SrcBucketInvalidRegion,
    /// The source bucket cannot be found.
    SrcBucketNotFound,
    /// The source bucket has no replication configuration.
    SrcBucketReplicationConfigMissing,
    /// Object ACLs cannot be read at the source (`s3:GetObjectVersionAcl`, object ownership).
    SrcGetAclNotPermitted,
    /// Legal holds cannot be read at the source.
    SrcGetLegalHoldNotPermitted,
    /// Objects cannot be read at the source (`s3:GetObjectVersionForReplication`).
    SrcGetObjectNotPermitted,
    /// Retention cannot be read at the source.
    SrcGetRetentionNotPermitted,
    /// Tags cannot be read at the source (`s3:GetObjectVersionTagging`).
    SrcGetTaggingNotPermitted,
    /// Object metadata cannot be read at the source (`s3:GetObjectVersionForReplication`).
    SrcHeadObjectNotPermitted,
    /// The source key was deleted before it replicated.
    SrcKeyNotFound,
    /// The source KMS key is not in a usable state.
    SrcKmsKeyInvalidState,
    /// The object is not eligible for the rule (storage class, tags).
    SrcObjectNotEligible,
    /// The source object does not exist.
    SrcObjectNotFound,
    /// The object was already replicated.
    SrcReplicationNotPending,
    /// The source version was deleted before it replicated.
    SrcVersionNotFound,
}
