//! S3 replication events -> incidents, pages and re-drive manifests: the pure part (no I/O).
//!
//! Data flow of one invocation of `replication-failure`:
//!
//! ```text
//! Lambda payload (serde_json::Value)
//!   -> event::parse_payload         Payload: Sqs / Sns / Direct / Unrecognized, one parse result per message
//!        per message: Ok(Notification { records, test_event }) or Err(ParseError) -> quarantine + acknowledge
//!   -> aggregate::aggregate         records -> groups (src bucket, dst bucket, rule, event type, reason)
//!        (classify::classify)          -> GroupedForIncident per IncidentKey (src bucket, rule)
//!                                      + failed objects, each once per batch
//!   -> ledger                       per record: fingerprints (its message's id, its S3 event with sequencer);
//!                                      the stored incident's ledger says which were counted before
//!   -> manifest::build_manifests    failed objects not counted before -> CSV files for S3 Batch Replication
//!   -> incident::merge_delivery     per incident: stored Incident + the records it has not counted -> Incident
//!                                      + PageDecision (the handler renders the page into outbox, writes the
//!                                      document with compare-and-swap, re-merging on conflict, then pays it)
//!   (scheduled) incident::evaluate_quiet -> closes quiet incidents, PageDecision::Recovered (OK page)
//! ```
//!
//! AWS calls per batch therefore grow with the number of incidents and manifests (a handful), never with the
//! number of records. Replication failures never trigger a failover: failing over to a replica that is
//! behind loses data; open incidents are reported as RPO risk by `status`, snapshots, drills and `check`.
//!
//! Modules: [`event`] (parsing every wrapping), [`reason`] (the failure reasons AWS lists), [`classify`] (failure
//! reasons -> category, severity, action),
//! [`aggregate`] (groups, incident keys, failed objects), [`ledger`] (what an incident counted: idempotency per
//! message), [`incident`] (the stored document and paging decisions), [`outbox`] (the pages it owes),
//! [`manifest`] (CSV).

pub mod aggregate;
pub mod classify;
pub mod event;
pub mod incident;
pub mod ledger;
pub mod manifest;
pub mod outbox;
pub mod reason;

#[cfg(test)]
mod tests;
