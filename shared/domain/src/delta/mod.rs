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

/// The protocol feature of catalog-managed tables (commits staged under `_delta_log/_staged_commits/` and
/// ratified by the catalog): the log alone cannot say which version is the table's.
pub const CATALOG_MANAGED_FEATURES: [&str; 2] = ["catalogManaged", "catalogOwned-preview"];

/// The table property that turns on in-commit timestamps.
pub const IN_COMMIT_TIMESTAMPS: &str = "delta.enableInCommitTimestamps";
