//! In-memory adapters of the ports, for unit tests of the engine (hand-written fakes of pure storage
//! semantics; the AWS behaviour itself is tested against moto in `tests/`).

use crate::error::StoreError;
use crate::{
    Channel, Clock, ControlBucket, DatedObject, Notifier, OutgoingMessage, Parameter, ParameterStore, ParameterVersion,
    StoredObject, WriteCondition, Written,
};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The guard even when a panicking test poisoned the mutex: the fakes' data stays readable for the asserts.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many versions SSM keeps of a parameter.
const MAX_VERSIONS: usize = 100;

/// SSM in memory: every version kept, labels per version.
#[derive(Debug, Default)]
pub struct MemParameters {
    inner: Mutex<BTreeMap<String, Vec<(ParameterVersion, String)>>>,
    /// Parameter names whose writes fail (a transient error, nothing written) until cleared.
    pub failing_puts: Mutex<Vec<String>>,
}

impl MemParameters {
    /// Seeds a parameter of the given type.
    pub fn seed(&self, name: &str, value: &str, kind: &str) {
        let mut m = locked(&self.inner);
        let versions = m.entry(name.to_owned()).or_default();
        let version = versions.len() as i64 + 1;
        versions.push((ParameterVersion { version, value: value.into(), labels: vec![], last_modified: None }, kind.into()));
    }

    fn latest(&self, name: &str) -> Option<Parameter> {
        let m = locked(&self.inner);
        let (v, kind) = m.get(name)?.last()?;
        Some(Parameter { name: name.into(), value: v.value.clone(), kind: kind.clone(), version: v.version, last_modified: None })
    }
}

impl ParameterStore for MemParameters {
    async fn get_many(&self, names: &[String]) -> Result<BTreeMap<String, Parameter>, StoreError> {
        Ok(names.iter().filter_map(|n| self.latest(n).map(|p| (n.clone(), p))).collect())
    }

    async fn get_tree(&self, path: &str) -> Result<Vec<Parameter>, StoreError> {
        let names: Vec<String> = locked(&self.inner).keys().filter(|k| k.starts_with(&format!("{path}/"))).cloned().collect();
        Ok(names.iter().filter_map(|n| self.latest(n)).collect())
    }

    async fn get_one(&self, selector: &str) -> Result<Option<Parameter>, StoreError> {
        let Some((name, sel)) = selector.split_once(':') else { return Ok(self.latest(selector)) };
        let m = locked(&self.inner);
        let Some(versions) = m.get(name) else { return Ok(None) };
        let hit = versions
            .iter()
            .find(|(v, _)| sel.parse::<i64>().map(|n| n == v.version).unwrap_or(false) || v.labels.iter().any(|l| l == sel));
        Ok(hit.map(|(v, kind)| Parameter {
            name: name.into(),
            value: v.value.clone(),
            kind: kind.clone(),
            version: v.version,
            last_modified: None,
        }))
    }

    async fn put(&self, name: &str, value: &str, overwrite: bool) -> Result<i64, StoreError> {
        if locked(&self.failing_puts).iter().any(|n| n == name) {
            return Err(StoreError::Transient {
                service: "SSM",
                operation: "PutParameter",
                message: format!("writes of {name} fail"),
            });
        }
        let mut m = locked(&self.inner);
        let versions = m.entry(name.to_owned()).or_default();
        if !overwrite && !versions.is_empty() {
            return Err(StoreError::Conflict { service: "SSM", operation: "PutParameter", target: name.into() });
        }
        // SSM keeps 100 versions: the oldest goes, unless it carries a label, which refuses the write.
        if versions.len() >= MAX_VERSIONS {
            if versions.first().is_some_and(|(v, _)| !v.labels.is_empty()) {
                return Err(StoreError::Refused {
                    service: "SSM",
                    operation: "PutParameter",
                    message: format!("ParameterMaxVersionLimitExceeded: the oldest version of {name} has a label"),
                });
            }
            versions.remove(0);
        }
        let version = versions.last().map_or(1, |(v, _)| v.version + 1);
        versions.push((ParameterVersion { version, value: value.into(), labels: vec![], last_modified: None }, "String".into()));
        Ok(version)
    }

    async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), StoreError> {
        let mut m = locked(&self.inner);
        let versions = m.get_mut(name).ok_or_else(|| StoreError::Refused {
            service: "SSM",
            operation: "LabelParameterVersion",
            message: format!("{name} not found"),
        })?;
        for (v, _) in versions.iter_mut() {
            v.labels.retain(|l| l != label);
            if v.version == version {
                v.labels.push(label.into());
            }
        }
        Ok(())
    }

    async fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> Result<(), StoreError> {
        if let Some(versions) = locked(&self.inner).get_mut(name) {
            for (v, _) in versions.iter_mut().filter(|(v, _)| v.version == version) {
                v.labels.retain(|l| !labels.contains(l));
            }
        }
        Ok(())
    }

    async fn history(&self, name: &str) -> Result<Vec<ParameterVersion>, StoreError> {
        Ok(locked(&self.inner).get(name).map(|v| v.iter().map(|(p, _)| p.clone()).collect()).unwrap_or_default())
    }

    async fn delete(&self, names: &[String]) -> Result<(), StoreError> {
        let mut m = locked(&self.inner);
        for n in names {
            m.remove(n);
        }
        Ok(())
    }
}

/// The control bucket in memory, with S3's conditional-write semantics.
#[derive(Debug, Default)]
pub struct MemBucket {
    objects: Mutex<BTreeMap<String, StoredObject>>,
    /// Key prefixes whose writes fail (a transient error, nothing written) until cleared.
    pub failing_puts: Mutex<Vec<String>>,
    /// Key prefixes whose deletes fail (a transient error, nothing deleted) until cleared.
    pub failing_deletes: Mutex<Vec<String>>,
    counter: Mutex<u64>,
    /// The store's clock, answered by dated writes (`None`: the store tells no time, as the default port).
    store_clock: Mutex<Option<time::OffsetDateTime>>,
}

impl MemBucket {
    fn delete_fault(&self, key: &str) -> Result<(), StoreError> {
        if locked(&self.failing_deletes).iter().any(|p| key.starts_with(p.as_str())) {
            return Err(StoreError::Transient { service: "S3", operation: "DeleteObject", message: "injected".into() });
        }
        Ok(())
    }

    /// The body of an object as text.
    pub fn text(&self, key: &str) -> Option<String> {
        locked(&self.objects).get(key).map(|o| String::from_utf8_lossy(&o.body).into_owned())
    }

    /// Sets the store's clock: dated writes answer it (S3's `Date`), whatever the engine's clock says.
    pub fn set_store_time(&self, t: time::OffsetDateTime) {
        *locked(&self.store_clock) = Some(t);
    }

    /// The store's clock, if set.
    pub fn store_time(&self) -> Option<time::OffsetDateTime> {
        *locked(&self.store_clock)
    }

    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        locked(&self.objects).keys().cloned().collect()
    }
}

impl ControlBucket for MemBucket {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(locked(&self.objects).get(key).cloned())
    }

    async fn get_dated(&self, key: &str) -> Result<DatedObject, StoreError> {
        Ok(DatedObject { object: self.get(key).await?, store_time: self.store_time() })
    }

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        if locked(&self.failing_puts).iter().any(|p| key.starts_with(p.as_str())) {
            return Err(StoreError::Transient {
                service: "S3",
                operation: "PutObject",
                message: format!("writes under {key} fail"),
            });
        }
        let mut objects = locked(&self.objects);
        let conflict = match (&condition, objects.get(key)) {
            (WriteCondition::IfAbsent, Some(_)) => true,
            (WriteCondition::IfMatch(_), None) => true,
            (WriteCondition::IfMatch(etag), Some(o)) => &o.etag != etag,
            _ => false,
        };
        if conflict {
            return Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.into() });
        }
        let mut c = locked(&self.counter);
        *c += 1;
        let etag = format!("\"etag-{c}\"");
        objects.insert(key.into(), StoredObject { body, etag: etag.clone() });
        Ok(etag)
    }

    async fn put_dated(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> Result<Written, StoreError> {
        let etag = self.put(key, body, content_type, condition).await?;
        Ok(Written { etag, store_time: self.store_time() })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(locked(&self.objects).keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    async fn list_recent(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        // The counter in the ETag orders writes; newest first.
        let objects = locked(&self.objects);
        let mut out: Vec<(String, String)> = objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| {
                (k.clone(), format!("{:020}", o.etag.trim_matches('"').trim_start_matches("etag-").parse::<u64>().unwrap_or(0)))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete_fault(key)?;
        locked(&self.objects).remove(key);
        Ok(())
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.delete_fault(key)?;
        let mut objects = locked(&self.objects);
        match objects.get(key) {
            None => Ok(()),
            Some(o) if o.etag == etag => {
                objects.remove(key);
                Ok(())
            }
            Some(_) => Err(StoreError::Conflict { service: "S3", operation: "DeleteObject", target: key.into() }),
        }
    }
}

/// Records what would have been published.
#[derive(Debug, Default)]
pub struct MemNotifier {
    /// Every message, in order.
    pub sent: Mutex<Vec<(Channel, OutgoingMessage)>>,
    /// Channels whose publishes fail (a transient error) until cleared: a disabled key, a throttled topic.
    pub failing: Mutex<Vec<Channel>>,
}

impl MemNotifier {
    /// Makes publishes to `channel` fail (`true`) or succeed again (`false`).
    pub fn fail(&self, channel: Channel, failing: bool) {
        let mut f = locked(&self.failing);
        f.retain(|c| *c != channel);
        if failing {
            f.push(channel);
        }
    }

    /// Messages sent to one channel.
    pub fn on(&self, channel: Channel) -> Vec<OutgoingMessage> {
        locked(&self.sent).iter().filter(|(c, _)| *c == channel).map(|(_, m)| m.clone()).collect()
    }
}

impl Notifier for MemNotifier {
    async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        if locked(&self.failing).contains(&channel) {
            return Err(StoreError::Transient { service: "SNS", operation: "Publish", message: format!("{channel} fails") });
        }
        let mut sent = locked(&self.sent);
        sent.push((channel, message.clone()));
        Ok(Some(format!("msg-{}", sent.len())))
    }

    async fn probe(&self, _channel: Channel) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn publish_all(&self, channel: Channel, messages: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
        let mut ids = Vec::new();
        for m in messages {
            ids.push(self.publish(channel, m).await?);
        }
        Ok(ids)
    }
}

/// A clock that stands still unless moved.
#[derive(Debug)]
pub struct FixedClock(pub Mutex<time::OffsetDateTime>);

impl FixedClock {
    /// A clock at `t`.
    pub fn at(t: time::OffsetDateTime) -> Self {
        FixedClock(Mutex::new(t))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: time::Duration) {
        *locked(&self.0) += d;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        *locked(&self.0)
    }
}

/// What [`MemDataBuckets`] was asked, for benches and tests that bound the calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DataCalls {
    /// Listing pages (plain and delimited).
    pub pages: u64,
    /// Keys those pages returned.
    pub listed: u64,
    /// Object reads.
    pub gets: u64,
    /// HEADs.
    pub heads: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// An object of [`MemDataBuckets`]: its body and its time.
type MemObject = (std::sync::Arc<Vec<u8>>, Option<time::OffsetDateTime>);

/// The data buckets in memory: S3's listing semantics (key order, `start-after`, continuation, delimiter `/`),
/// reads and HEADs. Bucket configuration (versioning, replication, notifications) is empty.
#[derive(Debug, Default)]
pub struct MemDataBuckets {
    objects: Mutex<BTreeMap<String, BTreeMap<String, MemObject>>>,
    calls: Mutex<DataCalls>,
}

impl MemDataBuckets {
    /// Writes an object.
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>, last_modified: Option<time::OffsetDateTime>) {
        locked(&self.objects)
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), (std::sync::Arc::new(body), last_modified));
    }

    /// Deletes an object (absent is not an error).
    pub fn remove(&self, bucket: &str, key: &str) {
        if let Some(b) = locked(&self.objects).get_mut(bucket) {
            b.remove(key);
        }
    }

    /// What was asked so far.
    pub fn calls(&self) -> DataCalls {
        *locked(&self.calls)
    }

    fn page(
        &self,
        bucket: &str,
        prefix: &str,
        delimited: bool,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> crate::ListPage {
        let m = locked(&self.objects);
        let mut page = crate::ListPage::default();
        let Some(b) = m.get(bucket) else { return page };
        // The continuation token is the last key (or common prefix) of the page before.
        let from = token.or(start_after).unwrap_or("");
        let max = max_keys.max(1) as usize;
        let mut last = None;
        let mut entries = 0;
        let range = b.range::<str, _>((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded));
        for (key, (body, modified)) in range.filter(|(k, _)| k.starts_with(prefix)) {
            if entries == max {
                page.next = last.clone();
                break;
            }
            let rest = &key[prefix.len()..];
            match rest.find('/').filter(|_| delimited) {
                Some(slash) => {
                    let dir = format!("{prefix}{}", &rest[..=slash]);
                    if page.prefixes.last() != Some(&dir) && token.is_none_or(|t| dir.as_str() > t) {
                        page.prefixes.push(dir.clone());
                        entries += 1;
                    }
                    // Every key under that directory is skipped: continue after its last one.
                    last = Some(format!("{dir}\u{10FFFF}"));
                }
                None => {
                    page.objects.push(crate::DataObject { key: key.clone(), size: body.len() as u64, last_modified: *modified });
                    entries += 1;
                    last = Some(key.clone());
                }
            }
        }
        let mut c = locked(&self.calls);
        c.pages += 1;
        c.listed += page.objects.len() as u64;
        page
    }
}

impl crate::DataBuckets for MemDataBuckets {
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<crate::ListPage, StoreError> {
        Ok(self.page(bucket, prefix, false, start_after, token, max_keys))
    }

    async fn list_dir_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<crate::ListPage, StoreError> {
        Ok(self.page(bucket, prefix, true, start_after, token, max_keys))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<crate::DataObject>, StoreError> {
        locked(&self.calls).heads += 1;
        let m = locked(&self.objects);
        Ok(m.get(bucket).and_then(|b| b.get(key)).map(|(body, modified)| crate::DataObject {
            key: key.to_owned(),
            size: body.len() as u64,
            last_modified: *modified,
        }))
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, StoreError> {
        let body = locked(&self.objects).get(bucket).and_then(|b| b.get(key)).map(|(b, _)| b.clone());
        let out = body.map(|b| match range {
            Some((s, e)) => b.get(s as usize..(e as usize).min(b.len())).unwrap_or_default().to_vec(),
            None => b.as_ref().clone(),
        });
        let mut c = locked(&self.calls);
        c.gets += 1;
        c.bytes += out.as_ref().map_or(0, |b| b.len() as u64);
        Ok(out)
    }

    async fn versioning(&self, _bucket: &str) -> Result<crate::Versioning, StoreError> {
        Ok(crate::Versioning::Enabled)
    }

    async fn replication(&self, _bucket: &str) -> Result<Vec<crate::ReplicationRule>, StoreError> {
        Ok(Vec::new())
    }

    async fn notifications(&self, _bucket: &str) -> Result<Vec<crate::NotificationTarget>, StoreError> {
        Ok(Vec::new())
    }
}

/// The continuations of carried exports, kept in memory.
#[derive(Debug, Default)]
pub struct MemQueue {
    /// Every body sent, in order.
    pub sent: Mutex<Vec<String>>,
    /// The bodies sent with a delay (guards), in order.
    pub delayed: Mutex<Vec<(String, u32)>>,
}

impl MemQueue {
    /// Takes every body sent so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *locked(&self.sent))
    }
}

impl crate::ExportQueue for MemQueue {
    fn send<'a>(&'a self, body: String, delay_seconds: u32) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if delay_seconds > 0 {
                locked(&self.delayed).push((body, delay_seconds));
            } else {
                locked(&self.sent).push(body);
            }
            Ok(())
        })
    }
}
