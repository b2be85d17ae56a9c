//! [`DnsRecords`] over Route 53: client redirection's CNAME (`ListResourceRecordSets`, `ChangeResourceRecordSets`
//! UPSERT, `GetChange`). The role may change only the one hosted zone of the environment (template.yaml).

use super::classify;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use dr_ports::DnsRecords;
use dr_ports::error::StoreError;
use futures_util::future::BoxFuture;

/// The Route 53 adapter.
#[derive(Debug, Clone)]
pub struct Route53Records {
    client: aws_sdk_route53::Client,
}

impl Route53Records {
    /// Wraps a client built at cold start.
    pub fn new(client: aws_sdk_route53::Client) -> Self {
        Route53Records { client }
    }
}

fn refused(operation: &'static str, message: String) -> StoreError {
    StoreError::Refused { service: "Route53", operation, message }
}

/// `name.` and `name` are the same record.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

impl DnsRecords for Route53Records {
    fn cname<'a>(&'a self, zone_id: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .start_record_name(name)
                .start_record_type(RrType::Cname)
                .max_items(1)
                .send()
                .await
                .map_err(|e| classify("Route53", "ListResourceRecordSets", e))?;
            Ok(out
                .resource_record_sets()
                .iter()
                .find(|r| same_name(r.name(), name) && *r.r#type() == RrType::Cname)
                .and_then(|r| r.resource_records().first())
                .map(|r| r.value().trim_end_matches('.').to_owned()))
        })
    }

    fn upsert_cname<'a>(
        &'a self,
        zone_id: &'a str,
        name: &'a str,
        value: &'a str,
        ttl: i64,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let op = "ChangeResourceRecordSets";
            let record = ResourceRecord::builder().value(value).build().map_err(|e| refused(op, e.to_string()))?;
            let set = ResourceRecordSet::builder()
                .name(name)
                .r#type(RrType::Cname)
                .ttl(ttl)
                .resource_records(record)
                .build()
                .map_err(|e| refused(op, e.to_string()))?;
            let change = Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .map_err(|e| refused(op, e.to_string()))?;
            let batch = ChangeBatch::builder()
                .comment("DR failover: client redirection")
                .changes(change)
                .build()
                .map_err(|e| refused(op, e.to_string()))?;
            let out = self
                .client
                .change_resource_record_sets()
                .hosted_zone_id(zone_id)
                .change_batch(batch)
                .send()
                .await
                .map_err(|e| classify("Route53", op, e))?;
            Ok(out.change_info().map(|c| c.id().trim_start_matches("/change/").to_owned()).unwrap_or_default())
        })
    }

    fn change_status<'a>(&'a self, change_id: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let out = self.client.get_change().id(change_id).send().await.map_err(|e| classify("Route53", "GetChange", e))?;
            Ok(out.change_info().map(|c| c.status().as_str().to_owned()).unwrap_or_else(|| "PENDING".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_compare_without_the_final_dot() {
        assert!(super::same_name("dbx.example.internal.", "DBX.example.internal"));
        assert!(!super::same_name("dbx.example.internal.", "other.example.internal"));
    }
}
