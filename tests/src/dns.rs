//! Route 53 in moto for client redirection: a hosted zone, a CNAME moved by UPSERT, and what it points at now.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};

/// A hosted zone `zone_name` in moto at `endpoint`; its client and its id (without `/hostedzone/`).
pub async fn zone(endpoint: &str, zone_name: &str) -> (Client, String) {
    let client = Client::new(&crate::dr_env::sdk_config(endpoint).await);
    let created = client
        .create_hosted_zone()
        .name(zone_name)
        .caller_reference(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create_hosted_zone {zone_name}: {e:?}"));
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_owned()).unwrap_or_default();
    (client, id)
}

/// Points the CNAME `record` at `value` (UPSERT, TTL 30 s).
pub async fn upsert_cname(client: &Client, zone: &str, record: &str, value: &str) {
    let built = ResourceRecordSet::builder()
        .name(record)
        .r#type(RrType::Cname)
        .ttl(30)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap_or_else(|e| panic!("{e}")))
        .build()
        .and_then(|set| Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build())
        .and_then(|change| ChangeBatch::builder().changes(change).build())
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(built)
        .send()
        .await
        .unwrap_or_else(|e| panic!("upsert {record}: {e:?}"));
}

/// What the CNAME `record` points at now (without the trailing dot); empty when it does not exist.
pub async fn cname(client: &Client, zone: &str, record: &str) -> String {
    let out = client.list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap_or_else(|e| panic!("{e:?}"));
    out.resource_record_sets()
        .iter()
        .find(|r| r.name().trim_end_matches('.') == record)
        .and_then(|r| r.resource_records().first())
        .map(|v| v.value().trim_end_matches('.').to_owned())
        .unwrap_or_default()
}
