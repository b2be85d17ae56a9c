//! The apply of a sync plan to the standby: kind by kind in the plan's order (catalogs, schemas, grants, pools,
//! policies, warehouses, jobs, permissions), in waves of at most [`IN_FLIGHT`] calls. Before each wave the failover lock is read (a failover that
//! took it makes the apply stand down) and the wave's changes are saved `started` in the journal; after it, their
//! outcome. A create re-reads the standby by name first (found: nothing to do), so an apply killed mid-wave and
//! run again makes each change once. Updates are full replacements (`jobs/reset`, `edit`): sent again, they
//! change nothing. Prunes run only with `prune`, each kind's after its other changes. Warehouses are created, then
//! stopped: the API has no way to create one stopped (`sql/warehouses` starts it), so the stop follows at once.
//! Object permissions come last, once their objects are there: each `PUT` is preceded by a read of the standby's
//! ACL (`crate::rules::sync::acls::rebase`), and skipped when the standby already has it.

use super::journal::{self, Journal, Status};
use super::{Prepared, SyncError};
use crate::rules::ObjectKind;
use crate::rules::sync::{self, Action, Change, Method, SYNCED, replace_placeholders, sync_key};
use dr_ports::documents::DrDocuments;
use dr_ports::lock::{self, FAILOVER_LOCK_KEY};
use dr_ports::{ApiError, Clock, ControlBucket, Idempotency, WorkspaceApi, WorkspaceConnector};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Calls in flight at once against the standby.
pub const IN_FLIGHT: usize = 16;

/// What an apply may do.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Delete the standby's objects that the active site does not have.
    pub prune: bool,
    /// Who asked (recorded).
    pub requested_by: String,
    /// Only these kinds (`None`: every synced kind): the scheduled `check` applies the kinds its policy names.
    pub kinds: Option<BTreeSet<ObjectKind>>,
}

/// The standby ids of the objects the plan created or found, by kind and name: what placeholders resolve to.
type Ids = BTreeMap<(ObjectKind, String), String>;

/// Applies `prepared` to the standby and returns the journal as saved last (its `outcome` says how it ended).
pub async fn apply<B: ControlBucket>(
    bucket: &B,
    connector: &dyn WorkspaceConnector,
    docs: &DrDocuments,
    prepared: &Prepared,
    opts: &ApplyOptions,
    clock: &dyn Clock,
) -> Result<Journal, SyncError> {
    if let Some(holder) = lock_holder(bucket, clock).await? {
        return Err(SyncError::NotReady(format!("{holder} holds the failover lock: sync does not write while a failover runs")));
    }
    let config = docs
        .site(prepared.standby)
        .valid()
        .ok_or_else(|| SyncError::NotReady(format!("sites/{} is invalid", prepared.standby)))?;
    let api = connector
        .connect(prepared.standby, config)
        .map_err(|e| SyncError::NotReady(format!("the {} workspace: {e}", prepared.standby)))?;
    let (mut journal, mut etag) = open(bucket, prepared, opts, clock).await?;
    let mut ids: Ids = journal
        .entries
        .iter()
        .filter(|e| e.action == "create" && matches!(e.status, Status::Done | Status::Found))
        .filter_map(|e| Some(((e.kind, e.name.clone()), e.id.clone()?)))
        .collect();
    // A kind's prunes run after its other changes, never in the same wave: an object's ACL update (the union) and
    // its prune (the active site's entries alone) are two `PUT`s of one object, and the prune must land last.
    let passes = SYNCED.into_iter().flat_map(|k| [(k, false), (k, true)]);
    for (kind, prunes) in passes {
        let todo: Vec<usize> = (0..journal.entries.len())
            .filter(|i| {
                let e = &journal.entries[*i];
                e.kind == kind && (e.action == "prune") == prunes && !e.status.settled()
            })
            .collect();
        for wave in todo.chunks(IN_FLIGHT) {
            if let Some(holder) = lock_holder(bucket, clock).await? {
                journal.outcome = Some(format!("stood down: {holder} took the failover lock"));
                return finish(bucket, journal, &etag, clock).await;
            }
            for i in wave {
                journal.entries[*i].status = Status::Started;
            }
            journal.updated_at = clock.now();
            etag = journal::save(bucket, &journal, Some(&etag)).await?;
            let outcomes =
                join_all(wave.iter().map(|i| one(api.as_ref(), &prepared.plan.changes[*i], &ids, prepared.tag.as_ref()))).await;
            for (i, (status, id, note)) in wave.iter().zip(outcomes) {
                let e = &mut journal.entries[*i];
                e.status = status;
                e.note = note;
                if let Some(id) = id {
                    if e.action == "create" {
                        ids.insert((e.kind, e.name.clone()), id.clone());
                    }
                    e.id = Some(id);
                }
            }
            journal.updated_at = clock.now();
            etag = journal::save(bucket, &journal, Some(&etag)).await?;
        }
    }
    let failed = journal.entries.iter().filter(|e| e.status == Status::Failed).count();
    journal.outcome = Some(if failed == 0 { "complete".into() } else { format!("incomplete: {failed} change(s) failed") });
    finish(bucket, journal, &etag, clock).await
}

/// The journal of the plan: resumed when an earlier apply of the same plan left one, new otherwise; the
/// changes this apply will not make marked skipped, saved before any call.
async fn open<B: ControlBucket>(
    bucket: &B,
    p: &Prepared,
    opts: &ApplyOptions,
    clock: &dyn Clock,
) -> Result<(Journal, String), SyncError> {
    let now = clock.now();
    let existing = journal::read(bucket, &p.plan_id).await?;
    let (mut j, etag) = match existing {
        Some(s) => (s.journal, Some(s.etag)),
        None => (Journal::new(&p.plan_id, p.active, p.standby, &p.plan, &opts.requested_by, opts.prune, now), None),
    };
    j.requested_by = opts.requested_by.clone();
    j.prune = opts.prune;
    j.outcome = None;
    j.updated_at = now;
    for e in &mut j.entries {
        if e.action == "blocked" {
            continue;
        }
        let chosen = opts.kinds.as_ref().is_none_or(|k| k.contains(&e.kind));
        let skip = if !chosen {
            Some(crate::sync::journal::NOT_CHOSEN)
        } else if e.action == "prune" && !opts.prune {
            Some("prune not asked (--prune)")
        } else {
            None
        };
        match skip {
            Some(why) if !e.status.settled() || e.status == Status::Skipped => {
                e.status = Status::Skipped;
                e.note = Some(why.into());
            }
            None if e.status == Status::Skipped => {
                e.status = Status::Pending;
                e.note = None;
            }
            _ => {}
        }
    }
    let etag = journal::save(bucket, &j, etag.as_deref()).await?;
    Ok((j, etag))
}

/// Saves the journal's end and publishes it as the latest sync record.
async fn finish<B: ControlBucket>(bucket: &B, mut journal: Journal, etag: &str, clock: &dyn Clock) -> Result<Journal, SyncError> {
    journal.updated_at = clock.now();
    journal::save(bucket, &journal, Some(etag)).await?;
    journal::publish(bucket, &journal).await?;
    Ok(journal)
}

/// The execution holding the failover lock within its lease, if any.
async fn lock_holder<B: ControlBucket>(bucket: &B, clock: &dyn Clock) -> Result<Option<String>, SyncError> {
    Ok(match lock::read_at(bucket, FAILOVER_LOCK_KEY, clock.now()).await? {
        Some((doc, _, at)) if !doc.expired(at) => Some(format!("execution {}", doc.execution_id)),
        _ => None,
    })
}

/// One change: its status, the standby's id of the object, and a note.
async fn one(
    api: &dyn WorkspaceApi,
    c: &Change,
    ids: &Ids,
    tag: Option<&(String, String)>,
) -> (Status, Option<String>, Option<String>) {
    let resolve = |k: ObjectKind, name: &str| ids.get(&(k, name.to_owned())).cloned();
    match &c.action {
        Action::Blocked { reason } => (Status::Skipped, None, Some(reason.clone())),
        Action::Create { call } => {
            match find(api, c, &call.body, tag).await {
                Ok(Some(id)) => return (Status::Found, Some(id), Some("already in the standby: not created again".into())),
                Ok(None) => {}
                Err(e) => return (Status::Failed, None, Some(format!("re-read before the create: {e}"))),
            }
            let mut body = call.body.clone();
            let owner = uc_owner(c.kind, &mut body);
            let missing = replace_placeholders(&mut body, &resolve);
            if !missing.is_empty() {
                return (
                    Status::Failed,
                    None,
                    Some(format!("references {}, which this apply did not create", missing.join(", "))),
                );
            }
            match api.send(call.method, &call.path, &body, Idempotency::NotIdempotent).await {
                Ok(answer) => {
                    let id = created_id(c.kind, &answer);
                    let note = match (c.kind, &id) {
                        (ObjectKind::SqlWarehouses, Some(id)) => stop(api, id).await.err(),
                        (ObjectKind::Catalogs | ObjectKind::Schemas, Some(id)) => set_owner(api, c.kind, id, owner).await.err(),
                        _ => None,
                    };
                    (Status::Done, id, note)
                }
                Err(e) => (Status::Failed, None, Some(e.to_string())),
            }
        }
        Action::Update { call, target, .. } | Action::Prune { call, target } => {
            let mut body = call.body.clone();
            // An ACL's path names an object the plan creates by its placeholder, as bodies name pools.
            let (mut path, mut target) = (Value::String(call.path.clone()), Value::String(target.clone()));
            let mut missing = replace_placeholders(&mut body, &resolve);
            missing.extend(replace_placeholders(&mut path, &resolve));
            replace_placeholders(&mut target, &resolve);
            let (path, target) = (path.as_str().unwrap_or_default().to_owned(), target.as_str().unwrap_or_default().to_owned());
            let target = &target;
            if !missing.is_empty() {
                return (
                    Status::Failed,
                    Some(target.clone()),
                    Some(format!("references {}, which this apply did not create", missing.join(", "))),
                );
            }
            if c.kind == ObjectKind::Permissions {
                // Re-read first: the write keeps what the standby gained since the export (an update) and its
                // owner, and is skipped when the standby already has it.
                let current = match api.get(&path, &[]).await {
                    Ok(a) => a,
                    Err(e) => return (Status::Failed, Some(target.clone()), Some(format!("re-read before the write: {e}"))),
                };
                match sync::acls::rebase(&body, &current, matches!(c.action, Action::Update { .. })) {
                    Some(b) => body = b,
                    None => return (Status::Done, Some(target.clone()), Some("already as planned: not written".into())),
                }
            }
            match api.send(call.method, &path, &body, Idempotency::Idempotent).await {
                Ok(_) => (Status::Done, Some(target.clone()), None),
                Err(e) if c.action.as_str() == "prune" && e.is_absent() => {
                    (Status::Done, Some(target.clone()), Some("already gone".into()))
                }
                Err(e) => (Status::Failed, Some(target.clone()), Some(e.to_string())),
            }
        }
    }
}

/// Stops a warehouse just created (the API starts it on creation); the error as a note.
async fn stop(api: &dyn WorkspaceApi, id: &str) -> Result<(), String> {
    let path = format!("/api/2.0/sql/warehouses/{id}/stop");
    api.post(&path, &json!({}), Idempotency::Idempotent)
        .await
        .map(|_| ())
        .map_err(|e| format!("created, but not stopped ({e}): stop it by hand, it bills while running"))
}

/// Takes the owner (and a catalog's isolation mode) out of a catalog's or schema's create body: the create takes
/// neither (the caller owns what it creates), a `PATCH` sets them after.
fn uc_owner(kind: ObjectKind, body: &mut Value) -> Option<Value> {
    let (ObjectKind::Catalogs | ObjectKind::Schemas, Value::Object(b)) = (kind, body) else { return None };
    let after: serde_json::Map<String, Value> =
        sync::uc::AFTER_CREATE.iter().filter_map(|f| Some(((*f).to_owned(), b.remove(*f)?))).collect();
    (!after.is_empty()).then_some(Value::Object(after))
}

/// Gives a catalog or schema just created the active site's owner (and isolation mode); the error as a note.
async fn set_owner(api: &dyn WorkspaceApi, kind: ObjectKind, name: &str, owner: Option<Value>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    let path = sync::uc::object_path(kind, name);
    api.send(Method::Patch, &path, &owner, Idempotency::Idempotent)
        .await
        .map(|_| ())
        .map_err(|e| format!("created, but its owner not set ({e}): the next sync updates it"))
}

/// The id a create answered.
fn created_id(kind: ObjectKind, answer: &Value) -> Option<String> {
    let field = match kind {
        ObjectKind::Jobs => "job_id",
        ObjectKind::InstancePools => "instance_pool_id",
        ObjectKind::ClusterPolicies => "policy_id",
        ObjectKind::Catalogs => "name",
        ObjectKind::Schemas => "full_name",
        _ => "id",
    };
    match answer.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The standby's object of the change's name, re-read before a create: its id, or `None` when it is not there.
async fn find(
    api: &dyn WorkspaceApi,
    c: &Change,
    body: &Value,
    tag: Option<&(String, String)>,
) -> Result<Option<String>, ApiError> {
    if matches!(c.kind, ObjectKind::Catalogs | ObjectKind::Schemas) {
        // Read by name: found is its name, absent is a 404.
        return match api.get(&sync::uc::object_path(c.kind, &c.name), &[]).await {
            Ok(_) => Ok(Some(c.name.clone())),
            Err(e) if e.is_absent() => Ok(None),
            Err(e) => Err(e),
        };
    }
    let (path, items, query): (&str, &str, Vec<(&str, String)>) = match c.kind {
        ObjectKind::Jobs => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            ("/api/2.2/jobs/list", "jobs", vec![("name", name), ("limit", "100".into())])
        }
        ObjectKind::InstancePools => ("/api/2.0/instance-pools/list", "instance_pools", Vec::new()),
        ObjectKind::ClusterPolicies => ("/api/2.0/policies/clusters/list", "policies", Vec::new()),
        _ => ("/api/2.0/sql/warehouses", "warehouses", Vec::new()),
    };
    let answer = api.get(path, &query).await?;
    let objects = answer.get(items).and_then(Value::as_array).cloned().unwrap_or_default();
    // Matched as the plan matched: by the key of what the create would make.
    let made = if c.kind == ObjectKind::Jobs { json!({ "settings": body }) } else { body.clone() };
    let want = sync_key(c.kind, &made, tag);
    let found = objects.iter().find(|o| want.is_some() && sync_key(c.kind, o, tag) == want);
    Ok(found.and_then(|o| {
        let (id, _) = sync::id_field(c.kind)?;
        match o.get(id)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }))
}
