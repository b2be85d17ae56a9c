//! Client redirection: the stable DNS name (a Route 53 CNAME) moved with the promotion.
//!
//! The adapter (`aws::route53`) owns the SDK calls (`ListResourceRecordSets`, `ChangeResourceRecordSets` UPSERT,
//! `GetChange`); the engine owns when, to what, and the record of it.

use crate::error::StoreError;
use futures_util::future::BoxFuture;

/// A CNAME record in a hosted zone. Object-safe (boxed futures): the engine holds one, when configured.
pub trait DnsRecords: Send + Sync {
    /// The record's CNAME value (without the trailing dot); `None` when there is no CNAME of that name.
    fn cname<'a>(&'a self, zone_id: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;

    /// UPSERTs the CNAME (idempotent: the same value twice is one record) and returns the change's id.
    fn upsert_cname<'a>(
        &'a self,
        zone_id: &'a str,
        name: &'a str,
        value: &'a str,
        ttl: i64,
    ) -> BoxFuture<'a, Result<String, StoreError>>;

    /// The change's status: `PENDING` or `INSYNC`.
    fn change_status<'a>(&'a self, change_id: &'a str) -> BoxFuture<'a, Result<String, StoreError>>;
}

/// An in-memory zone for tests: records by (zone, name), every change `INSYNC`, a count of UPSERTs.
#[cfg(any(test, feature = "memory"))]
#[derive(Debug, Default)]
pub struct MemoryDns {
    /// (zone, name) -> value.
    pub records: std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>,
    /// Every UPSERT made: (zone, name, value).
    pub upserts: std::sync::Mutex<Vec<(String, String, String)>>,
}

#[cfg(any(test, feature = "memory"))]
impl DnsRecords for MemoryDns {
    fn cname<'a>(&'a self, zone_id: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let v = self.records.lock().map(|r| r.get(&(zone_id.to_owned(), name.to_owned())).cloned()).unwrap_or_default();
        Box::pin(async move { Ok(v) })
    }

    fn upsert_cname<'a>(
        &'a self,
        zone_id: &'a str,
        name: &'a str,
        value: &'a str,
        _ttl: i64,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        if let (Ok(mut r), Ok(mut u)) = (self.records.lock(), self.upserts.lock()) {
            r.insert((zone_id.to_owned(), name.to_owned()), value.to_owned());
            u.push((zone_id.to_owned(), name.to_owned(), value.to_owned()));
        }
        Box::pin(async move { Ok("C1".to_owned()) })
    }

    fn change_status<'a>(&'a self, _change_id: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move { Ok("INSYNC".to_owned()) })
    }
}
