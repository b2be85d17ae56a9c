//! The core's ports: small traits, in domain words, over what the subsystems need from AWS and Databricks,
//! and the documents every subsystem reads through them.
//!
//! The `aws` crate implements the traits with the SDK; [`memory`] (feature `memory`, and every unit test of this
//! crate) implements them in memory, beside the traits it fakes, for the tests of every crate. The futures are
//! `Send` so that the Lambda runtime can drive them on its multi-threaded executor.
//!
//! | module | what |
//! |---|---|
//! | the crate root, [`data_buckets`], [`dns`], [`workspace`] | the port traits: parameters, the control bucket, pages, clock, the data buckets, Route 53, a Databricks workspace |
//! | [`documents`] | the DR documents read from the parameter tree |
//! | [`lock`] | the single-flight lock object (failover, drill), read by every subsystem that must stand down |
//! | [`snapshot`] | what a snapshot source is: the subsystems' files in a failover's snapshot |
//! | [`finding`], [`quarantine`] | a readiness finding; where unparseable input is kept |
//! | [`error`] | [`error::StoreError`], [`error::Retry`] |
//! | [`memory`], [`memory_workspace`] | in-memory adapters (feature `memory`) |

pub mod data_buckets;
pub mod dns;
pub mod documents;
pub mod error;
pub mod finding;
pub mod lock;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
#[cfg(any(test, feature = "memory"))]
pub mod memory_workspace;
pub mod quarantine;
pub mod snapshot;
pub mod workspace;

use crate::error::StoreError;
pub use data_buckets::{DataBuckets, DataObject, ListPage, NotificationTarget, ReplicationRule, Versioning};
pub use dns::DnsRecords;
pub use domain::notification::{Channel, OutgoingMessage};
use std::collections::BTreeMap;
use std::future::Future;
pub use workspace::{ApiError, Idempotency, SecretStore, WorkspaceApi, WorkspaceConnector};

/// A parameter as SSM holds it. SecureString values are never decrypted: the value of one is SSM's
/// ciphertext, and the engine never copies it anywhere either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Full name.
    pub name: String,
    /// The value (never decrypted for a SecureString).
    pub value: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// Version number.
    pub version: i64,
    /// Last modification, RFC 3339, if known.
    pub last_modified: Option<String>,
}

impl Parameter {
    /// Whether the value is a secret that must never leave SSM.
    pub fn is_secure(&self) -> bool {
        self.kind == "SecureString"
    }
}

/// One version in a parameter's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterVersion {
    /// Version number.
    pub version: i64,
    /// The value at that version.
    pub value: String,
    /// Labels attached to that version.
    pub labels: Vec<String>,
    /// Last modification, RFC 3339, if known.
    pub last_modified: Option<String>,
}

/// The DR parameters in SSM Parameter Store.
pub trait ParameterStore: Send + Sync {
    /// Reads the named parameters in as few calls as the service allows; absent names are absent from the map.
    fn get_many(&self, names: &[String]) -> impl Future<Output = Result<BTreeMap<String, Parameter>, StoreError>> + Send;

    /// Reads every parameter below `path`, recursively, without decryption.
    fn get_tree(&self, path: &str) -> impl Future<Output = Result<Vec<Parameter>, StoreError>> + Send;

    /// Reads one parameter; `selector` may be `name`, `name:version` or `name:label`.
    fn get_one(&self, selector: &str) -> impl Future<Output = Result<Option<Parameter>, StoreError>> + Send;

    /// Writes a String parameter and returns the new version. With `overwrite = false` an existing name is a
    /// [`StoreError::Conflict`].
    fn put(&self, name: &str, value: &str, overwrite: bool) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Attaches `label` to `version` of `name` (moving it from another version if needed).
    fn label(&self, name: &str, version: i64, label: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes `labels` from `version` of `name` (labels that are not there are ignored).
    fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The versions of `name`, oldest first.
    fn history(&self, name: &str) -> impl Future<Output = Result<Vec<ParameterVersion>, StoreError>> + Send;

    /// Deletes the named parameters (absent names are not an error).
    fn delete(&self, names: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An object read from the control bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The body.
    pub body: Vec<u8>,
    /// Its ETag, for compare-and-swap.
    pub etag: String,
}

/// The condition of a write to the control bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Unconditional.
    Overwrite,
    /// Create only if absent (`If-None-Match: *`).
    IfAbsent,
    /// Replace only if the ETag still matches (`If-Match`).
    IfMatch(String),
}

/// What a dated write answers: the new ETag and the store's clock when it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The object's new ETag.
    pub etag: String,
    /// The store's time at the write (S3's `Date` header, whole seconds); `None` when the store tells none.
    pub store_time: Option<time::OffsetDateTime>,
}

/// What a dated read answers: the object, if any, and the store's clock when it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedObject {
    /// The object; `None` when absent.
    pub object: Option<StoredObject>,
    /// The store's time at the read (S3's `Date` header, whole seconds); `None` when the store tells none.
    pub store_time: Option<time::OffsetDateTime>,
}

/// The S3 control bucket: locks, executions, snapshots, reports, incidents, manifests, quarantine.
pub trait ControlBucket: Send + Sync {
    /// Reads an object; `None` when absent.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send;

    /// Reads like [`get`](Self::get) and also answers the store's own clock at the read (S3's `Date`
    /// response header): whether the failover lock's lease has expired is judged by it, never by the local
    /// clock. The default knows no store clock (`None`: the caller falls back to its own clock).
    fn get_dated(&self, key: &str) -> impl Future<Output = Result<DatedObject, StoreError>> + Send {
        async move { Ok(DatedObject { object: self.get(key).await?, store_time: None }) }
    }

    /// Writes an object under `condition` and returns its new ETag; a failed condition is
    /// [`StoreError::Conflict`].
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Writes like [`put`](Self::put) and also answers the store's own clock at the write (S3's `Date`
    /// response header): the lease of the failover lock is judged by it, never by the local clock. The default
    /// knows no store clock (`None`: the caller falls back to its own clock).
    fn put_dated(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send {
        async move { Ok(Written { etag: self.put(key, body, content_type, condition).await?, store_time: None }) }
    }

    /// Lists the keys under `prefix`.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Lists the objects under `prefix` with their last-modified time (RFC 3339), newest first. The default
    /// knows no times and keeps the listing's order.
    fn list_recent(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send {
        async move { Ok(self.list(prefix).await?.into_iter().map(|k| (k, String::new())).collect()) }
    }

    /// Deletes an object (absent is not an error).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes an object only if its ETag is still `etag` (`If-Match` on `DeleteObject`); a changed object is
    /// [`StoreError::Conflict`], an absent one is not an error.
    fn delete_if_match(&self, key: &str, etag: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Publishing to the paging and chat topics.
pub trait Notifier: Send + Sync {
    /// Publishes one message; returns its message id, or `None` when the channel is not configured.
    fn publish(
        &self,
        channel: Channel,
        message: &OutgoingMessage,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Publishes several messages to one channel in as few calls as the service allows, in order.
    fn publish_all(
        &self,
        channel: Channel,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<Vec<Option<String>>, StoreError>> + Send;

    /// Checks that the channel's topic exists and is reachable without publishing anything; `false` when the
    /// channel is not configured.
    fn probe(&self, channel: Channel) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The time, injectable for tests of leases and cooldowns.
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> time::OffsetDateTime;
}

/// Where a Databricks export carried over invocations posts its continuations (`dr-workspace`'s `carry`): an
/// SQS queue whose messages invoke `manual-trigger` again. Delivery is at least once: a message may come twice.
pub trait ExportQueue: Send + Sync {
    /// Sends one message body, delivered after `delay_seconds` (at most 900, SQS's `DelaySeconds`).
    fn send<'a>(&'a self, body: String, delay_seconds: u32) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

// A borrowed adapter is an adapter: lets one set of clients serve an engine over another prefix (drills).
impl<T: ParameterStore + ?Sized> ParameterStore for &T {
    fn get_many(&self, names: &[String]) -> impl Future<Output = Result<BTreeMap<String, Parameter>, StoreError>> + Send {
        (**self).get_many(names)
    }
    fn get_tree(&self, path: &str) -> impl Future<Output = Result<Vec<Parameter>, StoreError>> + Send {
        (**self).get_tree(path)
    }
    fn get_one(&self, selector: &str) -> impl Future<Output = Result<Option<Parameter>, StoreError>> + Send {
        (**self).get_one(selector)
    }
    fn put(&self, name: &str, value: &str, overwrite: bool) -> impl Future<Output = Result<i64, StoreError>> + Send {
        (**self).put(name, value, overwrite)
    }
    fn label(&self, name: &str, version: i64, label: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).label(name, version, label)
    }
    fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).unlabel(name, version, labels)
    }
    fn history(&self, name: &str) -> impl Future<Output = Result<Vec<ParameterVersion>, StoreError>> + Send {
        (**self).history(name)
    }
    fn delete(&self, names: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete(names)
    }
}

impl<T: ControlBucket + ?Sized> ControlBucket for &T {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send {
        (**self).get(key)
    }
    fn get_dated(&self, key: &str) -> impl Future<Output = Result<DatedObject, StoreError>> + Send {
        (**self).get_dated(key)
    }
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<String, StoreError>> + Send {
        (**self).put(key, body, content_type, condition)
    }
    fn put_dated(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send {
        (**self).put_dated(key, body, content_type, condition)
    }
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        (**self).list(prefix)
    }
    fn list_recent(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send {
        (**self).list_recent(prefix)
    }
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete(key)
    }
    fn delete_if_match(&self, key: &str, etag: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete_if_match(key, etag)
    }
}

impl<T: Notifier + ?Sized> Notifier for &T {
    fn publish(
        &self,
        channel: Channel,
        message: &OutgoingMessage,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).publish(channel, message)
    }
    fn publish_all(
        &self,
        channel: Channel,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<Vec<Option<String>>, StoreError>> + Send {
        (**self).publish_all(channel, messages)
    }
    fn probe(&self, channel: Channel) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).probe(channel)
    }
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> time::OffsetDateTime {
        (**self).now()
    }
}
