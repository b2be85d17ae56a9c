//! A Databricks workspace in memory, for tests and benches of sync: jobs, instance pools, cluster policies and
//! SQL warehouses, with the list, create, edit (reset), stop and delete calls sync makes, and Unity Catalog
//! catalogs and schemas by name (get, create, `PATCH`, delete), object permissions (`GET` and `PUT` of
//! `/api/2.0/permissions/{type}/{id}` on the [`ObjectKind::Permissions`] documents), each answer after an
//! optional latency. Faults: a create whose answer is lost (made, then reported unreachable), and a hook run
//! after the n-th create (a test takes the failover lock there).

use crate::{ApiError, Idempotency, WorkspaceApi};
use domain::kinds::Method;
use domain::kinds::ObjectKind;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A hook run once the workspace has answered this many creates.
pub type AfterCreates = Option<(usize, Box<dyn Fn() + Send + Sync>)>;

/// The workspace.
#[derive(Default)]
pub struct MemWorkspace {
    /// The objects of each kind, as the API lists them.
    pub objects: Mutex<BTreeMap<ObjectKind, Vec<Value>>>,
    next: Mutex<u64>,
    /// Every call, `METHOD PATH` upper-cased for writes, `GET path` for reads.
    pub calls: Mutex<Vec<String>>,
    /// Names (`name` of the body) whose create is made and then its answer lost, once each.
    pub lose_answer_of: Mutex<Vec<String>>,
    /// Run after the n-th create.
    pub after_creates: Mutex<AfterCreates>,
    /// How long each answer takes.
    pub latency: Option<Duration>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemWorkspace {
    /// A workspace whose every answer takes `latency`.
    pub fn with_latency(latency: Duration) -> MemWorkspace {
        MemWorkspace { latency: Some(latency), ..MemWorkspace::default() }
    }

    /// The objects of a kind.
    pub fn list(&self, kind: ObjectKind) -> Vec<Value> {
        locked(&self.objects).get(&kind).cloned().unwrap_or_default()
    }

    /// How many creates were answered.
    pub fn creates(&self) -> usize {
        locked(&self.calls).iter().filter(|c| c.ends_with("/CREATE") || c.as_str() == "POST /API/2.0/SQL/WAREHOUSES").count()
    }

    fn kind_of(path: &str) -> (ObjectKind, &'static str) {
        match path {
            p if p.contains("/jobs/") => (ObjectKind::Jobs, "job_id"),
            p if p.contains("instance-pools") => (ObjectKind::InstancePools, "instance_pool_id"),
            p if p.contains("policies") => (ObjectKind::ClusterPolicies, "policy_id"),
            _ => (ObjectKind::SqlWarehouses, "id"),
        }
    }

    fn create(&self, kind: ObjectKind, id_field: &str, path: &str, body: &Value) -> Result<Value, ApiError> {
        let n = {
            let mut next = locked(&self.next);
            *next += 1;
            *next
        };
        let mut o = if kind == ObjectKind::Jobs { json!({ "settings": body }) } else { body.clone() };
        o[id_field] = if kind == ObjectKind::Jobs { json!(1000 + n) } else { json!(format!("s-{n}")) };
        if kind == ObjectKind::SqlWarehouses {
            o["state"] = json!("RUNNING");
        }
        let answer = json!({ id_field: o[id_field].clone() });
        locked(&self.objects).entry(kind).or_default().push(o);
        if let Some((_, hook)) = locked(&self.after_creates).as_ref().filter(|(after, _)| self.creates() == *after) {
            hook();
        }
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        let mut lost = locked(&self.lose_answer_of);
        if let Some(i) = lost.iter().position(|n| *n == name) {
            lost.remove(i);
            return Err(ApiError::Unreachable(format!("POST {path} (answer lost)")));
        }
        Ok(answer)
    }

    /// A grants `PATCH` (`None`: the path is not one): the changes' adds and removes on the securable's document
    /// of [`ObjectKind::Grants`], made when absent.
    fn grants(&self, path: &str, body: &Value) -> Option<Value> {
        let rest = path.strip_prefix("/api/2.1/unity-catalog/permissions/")?;
        let (t, name) = rest.split_once('/')?;
        let mut all = locked(&self.objects);
        let docs = all.entry(ObjectKind::Grants).or_default();
        let pos = match docs.iter().position(|d| d["securable_type"] == json!(t) && d["full_name"] == json!(name)) {
            Some(p) => p,
            None => {
                docs.push(json!({"securable_type": t, "full_name": name, "privilege_assignments": []}));
                docs.len() - 1
            }
        };
        let mut per: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for a in docs[pos]["privilege_assignments"].as_array().into_iter().flatten() {
            let privileges = a["privileges"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned);
            per.entry(a["principal"].as_str().unwrap_or_default().to_owned()).or_default().extend(privileges);
        }
        for c in body["changes"].as_array().into_iter().flatten() {
            let set = per.entry(c["principal"].as_str().unwrap_or_default().to_owned()).or_default();
            set.extend(c["add"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned));
            for r in c["remove"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                set.remove(r);
            }
        }
        let list: Vec<Value> = per
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(principal, privileges)| json!({"principal": principal, "privileges": privileges}))
            .collect();
        docs[pos]["privilege_assignments"] = Value::Array(list);
        Some(docs[pos].clone())
    }

    /// An object permissions call (`None`: the path is not one): a `PUT` replaces the direct entries of the
    /// object's document (made when absent) and keeps its inherited ones, as the Permissions API does.
    fn permissions(&self, put: Option<&Value>, path: &str) -> Option<Value> {
        let (t, id) = path.strip_prefix("/api/2.0/permissions/")?.split_once('/')?;
        let mut all = locked(&self.objects);
        let docs = all.entry(ObjectKind::Permissions).or_default();
        let pos = match docs.iter().position(|d| d["object_type"] == json!(t) && d["object_id"] == json!(id)) {
            Some(p) => p,
            None => {
                docs.push(json!({"object_type": t, "object_id": id, "access_control_list": []}));
                docs.len() - 1
            }
        };
        if let Some(body) = put {
            let inherited =
                |e: &Value| e["all_permissions"].as_array().into_iter().flatten().any(|p| p["inherited"] == json!(true));
            let mut acl: Vec<Value> =
                docs[pos]["access_control_list"].as_array().into_iter().flatten().filter(|e| inherited(e)).cloned().collect();
            for e in body["access_control_list"].as_array().into_iter().flatten() {
                let mut entry = e.clone();
                if let Some(o) = entry.as_object_mut() {
                    let level = o.remove("permission_level").unwrap_or(Value::Null);
                    o.insert("all_permissions".into(), json!([{"permission_level": level, "inherited": false}]));
                }
                acl.push(entry);
            }
            docs[pos]["access_control_list"] = Value::Array(acl);
        }
        Some(docs[pos].clone())
    }

    /// A Unity Catalog call (`None`: the path is not one): objects by `full_name`, created owned by `sync`.
    fn uc(&self, method: Option<Method>, path: &str, body: &Value) -> Option<Result<Value, ApiError>> {
        let (kind, rest) = if let Some(rest) = path.strip_prefix("/api/2.1/unity-catalog/catalogs") {
            (ObjectKind::Catalogs, rest)
        } else {
            (ObjectKind::Schemas, path.strip_prefix("/api/2.1/unity-catalog/schemas")?)
        };
        let absent =
            || ApiError::Status { method: "GET", path: path.into(), status: 404, error_code: None, message: rest.into() };
        let mut all = locked(&self.objects);
        let list = all.entry(kind).or_default();
        let Some(name) = rest.strip_prefix('/') else {
            let mut o = body.clone();
            let full = match kind {
                ObjectKind::Catalogs => body["name"].as_str().unwrap_or_default().to_owned(),
                _ => {
                    format!("{}.{}", body["catalog_name"].as_str().unwrap_or_default(), body["name"].as_str().unwrap_or_default())
                }
            };
            if list.iter().any(|x| x["full_name"] == json!(full)) {
                return Some(Err(ApiError::Status {
                    method: "POST",
                    path: path.into(),
                    status: 409,
                    error_code: None,
                    message: full,
                }));
            }
            o["full_name"] = json!(full);
            o["owner"] = json!("sync");
            list.push(o.clone());
            return Some(Ok(o));
        };
        let Some(pos) = list.iter().position(|o| o["full_name"] == json!(name)) else { return Some(Err(absent())) };
        Some(Ok(match method {
            None => list[pos].clone(),
            Some(Method::Delete) => list.remove(pos),
            _ => {
                if let (Value::Object(o), Value::Object(b)) = (&mut list[pos], body) {
                    o.extend(b.clone());
                }
                list[pos].clone()
            }
        }))
    }

    fn write(&self, method: Method, path: &str, body: &Value) -> Result<Value, ApiError> {
        locked(&self.calls).push(format!("{method:?} {path}").to_uppercase());
        if let Some(answer) = self.uc(Some(method), path, body) {
            return answer;
        }
        if let Some(answer) = self.grants(path, body) {
            return Ok(answer);
        }
        if let Some(answer) = self.permissions(Some(body), path) {
            return Ok(answer);
        }
        let (kind, id_field) = Self::kind_of(path);
        if path.ends_with("/create") || (method == Method::Post && path == "/api/2.0/sql/warehouses") {
            return self.create(kind, id_field, path, body);
        }
        let id = match kind {
            ObjectKind::SqlWarehouses => path.split('/').nth(5).unwrap_or_default().to_owned(),
            _ => body[id_field].to_string().trim_matches('"').to_owned(),
        };
        let mut all = locked(&self.objects);
        let list = all.entry(kind).or_default();
        let Some(pos) = list.iter().position(|o| o[id_field].to_string().trim_matches('"') == id) else {
            return Err(ApiError::Status { method: "POST", path: path.into(), status: 404, error_code: None, message: id });
        };
        if path.ends_with("/delete") || method == Method::Delete {
            list.remove(pos);
        } else if path.ends_with("/reset") {
            list[pos]["settings"] = body["new_settings"].clone();
        } else if path.ends_with("/stop") {
            list[pos]["state"] = json!("STOPPED");
        } else if let (Value::Object(o), Value::Object(b)) = (&mut list[pos], body) {
            o.extend(b.clone());
        }
        Ok(json!({}))
    }

    async fn wait(&self) {
        if let Some(d) = self.latency {
            tokio::time::sleep(d).await;
        }
    }
}

impl WorkspaceApi for MemWorkspace {
    fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            self.wait().await;
            locked(&self.calls).push(format!("GET {path}"));
            if let Some(answer) = self.uc(None, path, &Value::Null) {
                return answer;
            }
            if let Some(answer) = self.permissions(None, path) {
                return Ok(answer);
            }
            let (kind, items) = match path {
                "/api/2.2/jobs/list" => (ObjectKind::Jobs, "jobs"),
                "/api/2.0/instance-pools/list" => (ObjectKind::InstancePools, "instance_pools"),
                "/api/2.0/policies/clusters/list" => (ObjectKind::ClusterPolicies, "policies"),
                _ => (ObjectKind::SqlWarehouses, "warehouses"),
            };
            let mut list = self.list(kind);
            if let Some((_, name)) = query.iter().find(|(k, _)| *k == "name") {
                list.retain(|j| j["settings"]["name"] == json!(name));
            }
            Ok(json!({ items: list }))
        })
    }

    fn post<'a>(&'a self, path: &'a str, body: &'a Value, _: Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            self.wait().await;
            self.write(Method::Post, path, body)
        })
    }

    fn send<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        body: &'a Value,
        _: Idempotency,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            self.wait().await;
            self.write(method, path, body)
        })
    }
}
