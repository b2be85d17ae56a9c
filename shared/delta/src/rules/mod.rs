//! Delta tables on a replica: which version of each table can be trusted after S3 replicated it out of order.
//!
//! S3 replication is asynchronous and unordered: a replica may hold commit N+1 without N, a commit whose data
//! files have not arrived, or two parts of a three-part checkpoint. A replica's **consistent version** is the
//! newest version V reached from a complete checkpoint (every part, every sidecar) followed by every commit up
//! to V with no gap, with every data file and deletion vector live at V present. Everything here is a pure
//! function of what the engine listed and read:
//!
//! | module | what |
//! |---|---|
//! | [`log`] | the names in `_delta_log/` (commits, classic, multi-part and v2 checkpoints, sidecars, staged commits) and the plan they allow |
//! | [`actions`] | a commit's (or checkpoint's) actions: add, remove, metaData, protocol, commitInfo, txn, sidecar; deletion vector paths |
//! | [`replay`] | the replay from a checkpoint through the commits: the newest version whose files are all present |
//! | [`stream`] | a Structured Streaming checkpoint against its Delta sink: would a restart skip batches |
//! | [`report`] | one entry of `delta-tables.json` per location, RPO, and the workload's RPO (the worst table) |

pub mod actions;
pub mod log;
pub mod replay;
pub mod report;
pub mod stream;

/// The protocol features of catalog-managed tables (commits staged under `_delta_log/_staged_commits/` and
/// ratified by the catalog) and of coordinated commits (unbackfilled commits under `_delta_log/_commits/`): the
/// log alone cannot say which version is the table's.
pub const CATALOG_MANAGED_FEATURES: [&str; 3] = ["catalogManaged", "catalogOwned-preview", "coordinatedCommits-preview"];

/// The table features whose effect on reading the assessment knows (delta-kernel-rs 0.30 reads all of them):
/// none changes which files a snapshot needs beyond what the assessment checks (data files, deletion vectors,
/// v2 checkpoints' sidecars, change data files). A feature outside this list leaves the table uncertified.
pub const UNDERSTOOD_FEATURES: [&str; 28] = [
    // Writer-only features: they constrain writers, never what a reader reads.
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "generatedColumns",
    "identityColumns",
    "inCommitTimestamp",
    "rowTracking",
    "domainMetadata",
    "icebergCompatV1",
    "icebergCompatV2",
    "icebergCompatV3",
    "clustering",
    "materializePartitionColumns",
    "allowColumnDefaults",
    // Reader-writer features: how columns and values are read, or (deletionVectors, v2Checkpoint) files the
    // assessment checks.
    "columnMapping",
    "deletionVectors",
    "timestampNtz",
    "timestampWithoutTimezone",
    "typeWidening",
    "typeWidening-preview",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "variantType",
    "variantType-preview",
    "variantShredding",
    "variantShredding-preview",
    "geospatial",
];

/// The table property that turns on in-commit timestamps.
pub const IN_COMMIT_TIMESTAMPS: &str = "delta.enableInCommitTimestamps";

/// The table property that says from which version commits carry in-commit timestamps (absent: from the
/// table's creation). Before it, a commit's time is its file's modification time.
pub const ICT_ENABLEMENT_VERSION: &str = "delta.inCommitTimestampEnablementVersion";

/// The table property that turns on the change data feed.
pub const CHANGE_DATA_FEED: &str = "delta.enableChangeDataFeed";
