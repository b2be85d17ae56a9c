//! The data-plane buckets (primary and replica), read only: listings, objects, and the bucket configuration
//! that replication coverage is judged by.

use crate::error::StoreError;
use std::future::Future;
use time::OffsetDateTime;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (for a replica: when it was replicated).
    pub last_modified: Option<OffsetDateTime>,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects.
    pub objects: Vec<DataObject>,
    /// The token of the next page, when there is one.
    pub next: Option<String>,
    /// The "directories" directly under the prefix (keys up to the next `/`), for a delimited listing only.
    pub prefixes: Vec<String>,
}

/// A bucket's versioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// On.
    Enabled,
    /// Was on, now suspended.
    Suspended,
    /// Never turned on.
    Off,
}

/// One replication rule of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRule {
    /// Its id.
    pub id: String,
    /// `Enabled`.
    pub enabled: bool,
    /// The key prefix it covers (`""`: the whole bucket; a rule filtered by tags only covers `None`).
    pub prefix: Option<String>,
    /// The destination bucket's name (from its ARN).
    pub destination_bucket: String,
    /// Replication metrics on.
    pub metrics: bool,
    /// Replication Time Control on.
    pub time_control: bool,
}

/// One event notification of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationTarget {
    /// The topic's, queue's or function's ARN.
    pub arn: String,
    /// The events, e.g. `s3:Replication:*`.
    pub events: Vec<String>,
    /// The key prefix filter, if any.
    pub prefix: Option<String>,
}

/// The data buckets.
pub trait DataBuckets: Send + Sync {
    /// One page (at most `max_keys`) of the objects under `prefix` whose keys sort after `start_after`, from
    /// `token` (a previous page's `next`).
    fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// One page of the objects directly under `prefix` (delimiter `/`): deeper keys come as
    /// [`ListPage::prefixes`], so a listing of a table's log never pages through `_sidecars/` and a listing of a
    /// directory of data files never through its subdirectories.
    fn list_dir_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// An object's size and time (S3 `HeadObject`); `None` when absent.
    fn head(&self, bucket: &str, key: &str) -> impl Future<Output = Result<Option<DataObject>, StoreError>> + Send;

    /// An object's bytes (`range`: the bytes `start..end` only); `None` when absent.
    fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The bucket's versioning.
    fn versioning(&self, bucket: &str) -> impl Future<Output = Result<Versioning, StoreError>> + Send;

    /// The bucket's replication rules (none when it has no replication configuration).
    fn replication(&self, bucket: &str) -> impl Future<Output = Result<Vec<ReplicationRule>, StoreError>> + Send;

    /// The bucket's event notifications (topics, queues, functions).
    fn notifications(&self, bucket: &str) -> impl Future<Output = Result<Vec<NotificationTarget>, StoreError>> + Send;
}
