"""The write side of the local Databricks workspace API (scripts/databricks_server.py): what `dr sync` and activation
change in a workspace, validated with the rules the Databricks REST reference and the official SDKs publish.

Every rule below names its source. The main ones:
- Jobs API 2.2 (https://docs.databricks.com/api/workspace/jobs/create, .../jobs/reset, .../jobs/delete;
  databricks-sdk-py databricks/sdk/service/jobs.py JobSettings, Task, JobCluster, CronSchedule, JobRunAs):
  task_key required, unique and matching [\\w-]{1,100}; depends_on names tasks of the job; job_cluster_key names a
  job cluster; existing clusters, policies, pools and SQL warehouses referenced must exist in this workspace; a job
  has at most one of schedule, continuous and trigger; at most 25 tags; a schedule needs quartz_cron_expression and
  timezone_id; pause_status is PAUSED or UNPAUSED; run_as names exactly one of user_name and
  service_principal_name, and only a workspace admin may name someone else.
- Cluster policies (https://docs.databricks.com/api/workspace/clusterpolicies/create; databricks-sdk-py docs
  workspace/compute/cluster_policies.rst): name required, unique, 1-100 characters; definition a JSON document passed
  as a string; only workspace admins create, edit and delete policies.
- Instance pools (https://docs.databricks.com/api/workspace/instancepools/create; instance_pools.rst):
  instance_pool_name required, unique, 1-100 characters; node_type_id required, and an edit cannot change it.
- SQL warehouses (https://docs.databricks.com/api/workspace/warehouses/create; sql/warehouses.rst): name unique
  and under 100 characters; cluster_size one of 2X-Small..5X-Large; auto_stop_mins 0 or >= 10 (default 120);
  min_num_clusters >= 1 and <= min(max_num_clusters, 30); max_num_clusters <= 40; fewer than 45 tags; serverless
  needs warehouse_type PRO. A new warehouse starts (the SDK's create waits for RUNNING).
- Unity Catalog (https://docs.databricks.com/api/workspace/catalogs/create, .../schemas/create,
  .../grants/update; databricks-sdk-py databricks/sdk/service/catalog.py Privilege; the privilege table of
  https://docs.databricks.com/data-governance/unity-catalog/manage-privileges/privileges.html): names are unique
  case-insensitively (409 CATALOG_ALREADY_EXISTS / SCHEMA_ALREADY_EXISTS); a schema's catalog must exist; a
  storage_root must lie under an external location of the metastore; a grant change names a principal and
  privileges that apply to the securable's type.
- Object permissions (https://docs.databricks.com/api/workspace/permissions/set, .../update;
  databricks-sdk-py jobs.py JobPermissionLevel, sql.py WarehousePermissionLevel, compute.py
  ClusterPolicyPermissionLevel, InstancePoolPermissionLevel): PUT replaces the direct permissions, PATCH adds or
  changes them; each entry names exactly one of user_name, group_name, service_principal_name and a level that the
  object type has (jobs: CAN_VIEW, CAN_MANAGE_RUN, IS_OWNER, CAN_MANAGE; warehouses: CAN_VIEW, CAN_MONITOR,
  CAN_USE, IS_OWNER, CAN_MANAGE; cluster-policies: CAN_USE; instance-pools: CAN_ATTACH_TO, CAN_MANAGE); an unknown
  object is 404 RESOURCE_DOES_NOT_EXIST; an owner (IS_OWNER) is a user or a service principal, never a group, and
  one at most; a job's PUT names exactly one ("The job must have exactly one owner.", databricks/cli issues 3849
  and 5682); a PUT keeps the inherited entries. A job or warehouse no write has set is owned by its creator,
  admins holding CAN_MANAGE inherited (https://docs.databricks.com/jobs/privileges.html).

Site-local values: when the state's "site" object lists "zones", "instance_profiles" or "identities", a request
naming another zone (aws_attributes.zone_id other than "auto"), an unregistered instance profile, or an unknown
user, group or service principal is refused as a real workspace in another region refuses a value copied from the
primary's. Absent lists accept anything.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from typing import Any, Callable

TASK_KEY = re.compile(r"^[\w\-]{1,100}$")
TASK_TYPES = ("notebook_task", "spark_jar_task", "spark_python_task", "spark_submit_task", "pipeline_task",
              "python_wheel_task", "dbt_task", "sql_task", "run_job_task", "condition_task", "for_each_task",
              "clean_rooms_notebook_task", "dashboard_task", "power_bi_task", "gen_ai_compute_task", "alert_task")
PAUSE = ("PAUSED", "UNPAUSED")
MAX_JOB_TAGS = 25
CLUSTER_SIZES = ("2X-Small", "X-Small", "Small", "Medium", "Large", "X-Large", "2X-Large", "3X-Large", "4X-Large",
                 "5X-Large")
WAREHOUSE_TYPES = ("PRO", "CLASSIC", "TYPE_UNSPECIFIED")
SPOT_POLICIES = ("COST_OPTIMIZED", "RELIABILITY_OPTIMIZED", "POLICY_UNSPECIFIED")
# The privileges each securable type takes (the privilege table cited above).
PRIVILEGES = {
    "catalog": {"ALL_PRIVILEGES", "APPLY_TAG", "BROWSE", "CREATE_FUNCTION", "CREATE_MATERIALIZED_VIEW", "CREATE_MODEL",
                "CREATE_SCHEMA", "CREATE_TABLE", "CREATE_VOLUME", "EXECUTE", "EXTERNAL_USE_SCHEMA", "MANAGE", "MODIFY",
                "READ_VOLUME", "REFRESH", "SELECT", "USE_CATALOG", "USE_SCHEMA", "WRITE_VOLUME"},
    "schema": {"ALL_PRIVILEGES", "APPLY_TAG", "CREATE_FUNCTION", "CREATE_MATERIALIZED_VIEW", "CREATE_MODEL",
               "CREATE_TABLE", "CREATE_VOLUME", "EXECUTE", "EXTERNAL_USE_SCHEMA", "MANAGE", "MODIFY", "READ_VOLUME",
               "REFRESH", "SELECT", "USE_SCHEMA", "WRITE_VOLUME"},
    "table": {"ALL_PRIVILEGES", "APPLY_TAG", "MANAGE", "MODIFY", "REFRESH", "SELECT"},
    "volume": {"ALL_PRIVILEGES", "APPLY_TAG", "MANAGE", "READ_VOLUME", "WRITE_VOLUME"},
    "external_location": {"ALL_PRIVILEGES", "BROWSE", "CREATE_EXTERNAL_TABLE", "CREATE_EXTERNAL_VOLUME",
                          "CREATE_MANAGED_STORAGE", "MANAGE", "READ_FILES", "WRITE_FILES"},
    "storage_credential": {"ALL_PRIVILEGES", "CREATE_EXTERNAL_LOCATION", "CREATE_EXTERNAL_TABLE", "MANAGE",
                           "READ_FILES", "WRITE_FILES"},
    "registered_model": {"ALL_PRIVILEGES", "APPLY_TAG", "EXECUTE", "MANAGE"},
    "function": {"ALL_PRIVILEGES", "EXECUTE", "MANAGE"},
    "metastore": {"CREATE_CATALOG", "CREATE_CONNECTION", "CREATE_EXTERNAL_LOCATION", "CREATE_PROVIDER",
                  "CREATE_RECIPIENT", "CREATE_SHARE", "CREATE_STORAGE_CREDENTIAL", "MANAGE_ALLOWLIST",
                  "SET_SHARE_PERMISSION", "USE_MARKETPLACE_ASSETS", "USE_PROVIDER", "USE_RECIPIENT", "USE_SHARE"},
}
# The levels each object type's permissions take (the SDK enums cited above), and the state/REST names of each type.
LEVELS = {
    "jobs": {"CAN_VIEW", "CAN_MANAGE_RUN", "IS_OWNER", "CAN_MANAGE"},
    "clusters": {"CAN_ATTACH_TO", "CAN_RESTART", "CAN_MANAGE"},
    "warehouses": {"CAN_VIEW", "CAN_MONITOR", "CAN_USE", "IS_OWNER", "CAN_MANAGE"},
    "cluster-policies": {"CAN_USE"},
    "instance-pools": {"CAN_ATTACH_TO", "CAN_MANAGE"},
}
PRINCIPAL_FIELDS = ("user_name", "group_name", "service_principal_name")
# Each object type's `object_type` and `object_id` prefix in a permissions answer.
PERMISSION_PATHS = {"jobs": ("job", "/jobs/"), "clusters": ("cluster", "/clusters/"),
                    "warehouses": ("warehouse", "/sql/warehouses/"),
                    "cluster-policies": ("cluster-policy", "/cluster-policies/"),
                    "instance-pools": ("instance-pool", "/instance-pools/")}


class Rejected(Exception):
    """A request the API refuses: (HTTP status, error_code, message). The server turns it into its ApiError."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad(message: str) -> Rejected:
    return Rejected(400, "INVALID_PARAMETER_VALUE", message)


def missing(message: str, code: str = "RESOURCE_DOES_NOT_EXIST") -> Rejected:
    return Rejected(404, code, message)


def new_hex(existing: Callable[[str], bool], length: int, seed: str) -> str:
    """An id of `length` hex digits no object has yet (derived from a counter, so runs repeat)."""
    n = 0
    while True:
        text = hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()[:length]
        if not existing(text):
            return text
        n += 1


def string_field(body: dict, name: str, required: bool, longest: int | None = None, where: str = "") -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad(f"Missing required field: {where}{name}")
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad(f"{where}{name} must be a non-empty string")
    if longest is not None and not 1 <= len(value) <= longest:
        raise bad(f"{where}{name} must be between 1 and {longest} characters, got {len(value)}")
    return value


def unique_name(body: dict, field: str, longest: int, others: list, id_field: str, own_id: Any, what: str) -> str:
    """The required name `field` of a policy, pool or warehouse body: a non-empty string of at most `longest`
    characters that no other object of `others` (the ones whose `id_field` is not `own_id`) has. Cluster policies:
    name required, unique, 1-100 characters; instance pools: instance_pool_name the same; SQL warehouses: name
    unique and under 100 characters (the sources in the module's docstring)."""
    name = string_field(body, field, True, longest)
    if any(o.get(field) == name and o.get(id_field) != own_id for o in others):
        raise bad(f"{what} named {name!r} already exists; names must be unique")
    return name  # type: ignore[return-value]


class Writes:
    """Mixed into databricks_server.Workspace: the create, edit, delete and grant calls. The lock is held."""

    state: dict
    jobs: dict
    clusters: dict
    warehouses: dict
    catalogs: dict
    schemas: dict
    schema_names: set
    transitions: dict
    warehouse_delay: float

    # --- who asks, and what this site knows --------------------------------------------------------------------
    def require_admin(self, what: str) -> None:
        if not self.principal().get("admin"):  # type: ignore[attr-defined]
            raise Rejected(403, "PERMISSION_DENIED", f"Only workspace admins can {what}.")

    def site_list(self, key: str) -> list | None:
        site = self.state.get("site") or {}
        return site.get(key)

    def check_identity(self, name: str, what: str) -> None:
        known = self.site_list("identities")
        if known is not None and name not in known:
            raise Rejected(404, "PRINCIPAL_DOES_NOT_EXIST", f"Could not find principal with name {name} ({what}).")

    def check_aws_attributes(self, attrs: Any, where: str) -> None:
        if attrs is None:
            return
        if not isinstance(attrs, dict):
            raise bad(f"{where}aws_attributes must be an object")
        zone, zones = attrs.get("zone_id"), self.site_list("zones")
        if zone is not None and zones is not None and zone != "auto" and zone not in zones:
            raise bad(f"{where}aws_attributes.zone_id: invalid zone {zone!r} for this workspace's region "
                      f"(one of {', '.join(zones)} or auto)")
        profile, profiles = attrs.get("instance_profile_arn"), self.site_list("instance_profiles")
        if profile is not None and profiles is not None and profile not in profiles:
            raise bad(f"{where}aws_attributes.instance_profile_arn: instance profile {profile} is not registered "
                      "in this workspace")

    # --- jobs --------------------------------------------------------------------------------------------------
    def check_cluster_spec(self, spec: Any, where: str) -> None:
        if not isinstance(spec, dict):
            raise bad(f"{where} must be an object")
        string_field(spec, "spark_version", True, where=f"{where}.")
        policy = spec.get("policy_id")
        if policy is not None and not any(p.get("policy_id") == policy for p in self.state["cluster_policies"]):
            raise bad(f"{where}.policy_id: cluster policy {policy} does not exist")
        for field in ("instance_pool_id", "driver_instance_pool_id"):
            pool = spec.get(field)
            if pool is not None and not any(p.get("instance_pool_id") == pool for p in self.state["instance_pools"]):
                raise bad(f"{where}.{field}: instance pool {pool} does not exist")
        self.check_aws_attributes(spec.get("aws_attributes"), f"{where}.")

    def check_task(self, task: Any, i: int, clusters: set, keys: set) -> None:
        if not isinstance(task, dict):
            raise bad(f"tasks[{i}] must be an object")
        key = task.get("task_key")
        if not isinstance(key, str) or not TASK_KEY.match(key):
            raise bad(f"tasks[{i}].task_key must match [\\w-]{{1,100}}, got {key!r}")
        kinds = [t for t in TASK_TYPES if t in task]
        if len(kinds) != 1:
            raise bad(f"Task {key}: exactly one task type is required ({', '.join(TASK_TYPES[:4])}, ...), "
                      f"got {len(kinds)}")
        for dep in task.get("depends_on", []):
            if not isinstance(dep, dict) or dep.get("task_key") not in keys:
                raise bad(f"Task {key} depends on {dep!r}, which is not a task of this job")
        jc = task.get("job_cluster_key")
        if jc is not None and jc not in clusters:
            raise bad(f"Task {key}: job_cluster_key {jc!r} names no job cluster of this job")
        existing = task.get("existing_cluster_id")
        if existing is not None and existing not in self.clusters:
            raise bad(f"Task {key}: cluster {existing} does not exist")
        if "new_cluster" in task:
            self.check_cluster_spec(task["new_cluster"], f"Task {key}: new_cluster")
        warehouse = (task.get("sql_task") or {}).get("warehouse_id") if isinstance(task.get("sql_task"), dict) else None
        if warehouse is not None and warehouse not in self.warehouses:
            raise bad(f"Task {key}: SQL warehouse {warehouse} does not exist")

    def check_job_settings(self, settings: Any) -> None:
        if not isinstance(settings, dict):
            raise bad("The job settings must be an object")
        if settings.get("name") is not None and not isinstance(settings["name"], str):
            raise bad("name must be a string")
        clusters: set = set()
        for i, jc in enumerate(settings.get("job_clusters", [])):
            if not isinstance(jc, dict) or not isinstance(jc.get("job_cluster_key"), str):
                raise bad(f"job_clusters[{i}] needs a job_cluster_key")
            if jc["job_cluster_key"] in clusters:
                raise bad(f"job_clusters: duplicate job_cluster_key {jc['job_cluster_key']!r}")
            clusters.add(jc["job_cluster_key"])
            self.check_cluster_spec(jc.get("new_cluster"), f"job_clusters[{i}].new_cluster")
        tasks = settings.get("tasks", [])
        if not isinstance(tasks, list):
            raise bad("tasks must be a list")
        keys = [t.get("task_key") for t in tasks if isinstance(t, dict)]
        if len(set(keys)) != len(keys):
            raise bad("tasks: task_key values must be unique within a job")
        for i, task in enumerate(tasks):
            self.check_task(task, i, clusters, set(keys))
        self.check_triggers(settings)
        tags = settings.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise bad("tags must map strings to strings")
        if len(tags) > MAX_JOB_TAGS:
            raise bad(f"A job can have at most {MAX_JOB_TAGS} tags, got {len(tags)}")
        self.check_run_as(settings.get("run_as"))

    def check_triggers(self, settings: dict) -> None:
        """At most one of schedule, continuous and trigger, each with a valid pause_status (and a schedule its cron
        expression and time zone). jobs/update checks the merged settings with this."""
        triggers = [k for k in ("schedule", "continuous", "trigger") if settings.get(k) is not None]
        if len(triggers) > 1:
            raise bad(f"A job can have only one of schedule, continuous and trigger; got {', '.join(triggers)}")
        for k in triggers:
            if not isinstance(settings[k], dict):
                raise bad(f"{k} must be an object")
            if settings[k].get("pause_status", "UNPAUSED") not in PAUSE:
                raise bad(f"{k}.pause_status must be PAUSED or UNPAUSED")
        if "schedule" in triggers:
            string_field(settings["schedule"], "quartz_cron_expression", True, where="schedule.")
            string_field(settings["schedule"], "timezone_id", True, where="schedule.")

    def check_run_as(self, run_as: Any) -> None:
        if run_as is None:
            return
        named = [f for f in ("user_name", "service_principal_name") if isinstance(run_as, dict) and run_as.get(f)]
        if len(named) != 1:
            raise bad("run_as must name exactly one of user_name and service_principal_name")
        who = run_as[named[0]]
        me = self.principal()  # type: ignore[attr-defined]
        if who != me["user_name"] and not me.get("admin"):
            raise Rejected(403, "PERMISSION_DENIED", f"Only workspace admins can set run_as to {who}.")
        self.check_identity(who, "run_as")

    def jobs_create(self, body: dict) -> dict:
        settings = {k: v for k, v in body.items() if k != "access_control_list"}
        self.check_job_settings(settings)
        acl = body.get("access_control_list")
        if acl is not None:
            self.check_acl("jobs", acl)
        job_id = max(self.jobs, default=10**12) + 1
        me = self.principal()["user_name"]  # type: ignore[attr-defined]
        run_as = (settings.get("run_as") or {})
        job = {"job_id": job_id, "creator_user_name": me, "created_time": int(time.time() * 1000),
               "run_as_user_name": run_as.get("user_name") or run_as.get("service_principal_name") or me,
               "settings": copy.deepcopy(settings)}
        job["settings"].setdefault("name", "Untitled")
        self.state["jobs"].append(job)
        self.jobs[job_id] = job
        # A new id's ACL starts afresh, its creator the owner (the state may hold a stale one under the id).
        self.state["permissions"].pop(f"jobs/{job_id}", None)
        if acl is not None:
            self.store_acl("jobs", str(job_id), acl, replace=False)
        return {"job_id": job_id}

    def jobs_delete(self, body: dict) -> dict:
        job = self.job({"job_id": str(body.get("job_id", ""))})  # type: ignore[attr-defined]
        self.state["jobs"] = [j for j in self.state["jobs"] if j is not job]
        del self.jobs[job["job_id"]]
        self.state["permissions"].pop(f"jobs/{job['job_id']}", None)
        return {}

    # --- cluster policies --------------------------------------------------------------------------------------
    def policy_fields(self, body: dict, policy_id: str | None) -> dict:
        unique_name(body, "name", 100, self.state["cluster_policies"], "policy_id", policy_id, "A cluster policy")
        definition = body.get("definition")
        if definition is not None:
            try:
                parsed = json.loads(definition) if isinstance(definition, str) else None
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise bad("definition must be a policy definition: a JSON object passed as a string")
            zone = parsed.get("aws_attributes.zone_id", {})
            if isinstance(zone, dict) and zone.get("type") == "fixed":
                self.check_aws_attributes({"zone_id": zone.get("value")}, "definition: ")
            profile = parsed.get("aws_attributes.instance_profile_arn", {})
            if isinstance(profile, dict) and profile.get("type") == "fixed":
                self.check_aws_attributes({"instance_profile_arn": profile.get("value")}, "definition: ")
        keep = ("name", "definition", "description", "max_clusters_per_user", "policy_family_id",
                "policy_family_definition_overrides", "libraries")
        return {k: copy.deepcopy(body[k]) for k in keep if k in body}

    def find_policy(self, policy_id: Any) -> dict:
        for p in self.state["cluster_policies"]:
            if p.get("policy_id") == policy_id:
                return p
        raise missing(f"Cluster policy {policy_id} does not exist.")

    def policy_create(self, body: dict) -> dict:
        self.require_admin("create cluster policies")
        fields = self.policy_fields(body, None)
        pid = new_hex(lambda h: any(p.get("policy_id") == h.upper() for p in self.state["cluster_policies"]),
                      16, f"{self.name}:policy").upper()  # type: ignore[attr-defined]
        me = self.principal()["user_name"]  # type: ignore[attr-defined]
        self.state["cluster_policies"].append(
            {"policy_id": pid, **fields, "creator_user_name": me, "created_at_timestamp": int(time.time() * 1000),
             "is_default": False})
        return {"policy_id": pid}

    def policy_edit(self, body: dict) -> dict:
        self.require_admin("edit cluster policies")
        policy = self.find_policy(string_field(body, "policy_id", True))
        fields = self.policy_fields(body, policy["policy_id"])
        for k in ("definition", "description", "max_clusters_per_user", "policy_family_id",
                  "policy_family_definition_overrides", "libraries"):
            policy.pop(k, None)
        policy.update(fields)
        return {}

    def policy_delete(self, body: dict) -> dict:
        self.require_admin("delete cluster policies")
        policy = self.find_policy(string_field(body, "policy_id", True))
        self.state["cluster_policies"] = [p for p in self.state["cluster_policies"] if p is not policy]
        self.state["permissions"].pop(f"cluster-policies/{policy['policy_id']}", None)
        return {}

    # --- instance pools ----------------------------------------------------------------------------------------
    def pool_fields(self, body: dict, pool_id: str | None) -> dict:
        unique_name(body, "instance_pool_name", 100, self.state["instance_pools"], "instance_pool_id", pool_id,
                    "An instance pool")
        string_field(body, "node_type_id", True)
        for k in ("min_idle_instances", "max_capacity", "idle_instance_autotermination_minutes"):
            v = body.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise bad(f"{k} must be a non-negative integer")
        if body.get("max_capacity") is not None and body.get("min_idle_instances", 0) > body["max_capacity"]:
            raise bad("min_idle_instances must not exceed max_capacity")
        tags = body.get("custom_tags", {})
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise bad("custom_tags must map strings to strings")
        self.check_aws_attributes(body.get("aws_attributes"), "")
        return {k: copy.deepcopy(v) for k, v in body.items() if k != "instance_pool_id"}

    def find_pool(self, pool_id: Any) -> dict:
        for p in self.state["instance_pools"]:
            if p.get("instance_pool_id") == pool_id:
                return p
        raise missing(f"Instance pool {pool_id} does not exist.")

    def pool_create(self, body: dict) -> dict:
        self.require_admin("create instance pools")
        fields = self.pool_fields(body, None)
        suffix = new_hex(lambda h: any(p.get("instance_pool_id", "").endswith(h) for p in self.state["instance_pools"]),
                         8, f"{self.name}:pool")  # type: ignore[attr-defined]
        pid = f"{time.strftime('%m%d-%H%M%S', time.gmtime())}-pool{suffix}"
        self.state["instance_pools"].append({"instance_pool_id": pid, **fields, "state": "ACTIVE",
                                             "default_tags": {"Vendor": "Databricks", "DatabricksInstancePoolId": pid}})
        return {"instance_pool_id": pid}

    def pool_edit(self, body: dict) -> dict:
        self.require_admin("edit instance pools")
        pool = self.find_pool(string_field(body, "instance_pool_id", True))
        fields = self.pool_fields(body, pool["instance_pool_id"])
        if fields["node_type_id"] != pool.get("node_type_id"):
            raise bad(f"node_type_id cannot be changed (the pool has {pool.get('node_type_id')})")
        for k in ("custom_tags", "min_idle_instances", "max_capacity", "idle_instance_autotermination_minutes"):
            pool.pop(k, None)
        pool.update({k: v for k, v in fields.items()
                     if k in ("instance_pool_name", "node_type_id", "custom_tags", "min_idle_instances",
                              "max_capacity", "idle_instance_autotermination_minutes")})
        return {}

    def pool_delete(self, body: dict) -> dict:
        self.require_admin("delete instance pools")
        pool = self.find_pool(string_field(body, "instance_pool_id", True))
        self.state["instance_pools"] = [p for p in self.state["instance_pools"] if p is not pool]
        self.state["permissions"].pop(f"instance-pools/{pool['instance_pool_id']}", None)
        return {}

    # --- SQL warehouses ----------------------------------------------------------------------------------------
    def warehouse_fields(self, body: dict, wid: str | None) -> dict:
        unique_name(body, "name", 99, self.state["warehouses"], "id", wid, "A SQL warehouse")
        size = body.get("cluster_size")
        if size not in CLUSTER_SIZES:
            raise bad(f"cluster_size must be one of {', '.join(CLUSTER_SIZES)}, got {size!r}")
        stop = body.get("auto_stop_mins", 120)
        serverless = bool(body.get("enable_serverless_compute"))
        if not isinstance(stop, int) or stop < 0 or (0 < stop < 10 and not serverless):
            raise bad(f"auto_stop_mins must be 0 or >= 10, got {stop!r}")
        lo, hi = body.get("min_num_clusters", 1), body.get("max_num_clusters", body.get("min_num_clusters", 1))
        if not isinstance(lo, int) or not isinstance(hi, int) or not (1 <= lo <= min(hi, 30)) or hi > 40:
            raise bad(f"min_num_clusters must be >= 1 and <= min(max_num_clusters, 30), max_num_clusters <= 40; "
                      f"got {lo!r} and {hi!r}")
        kind = body.get("warehouse_type", "CLASSIC")
        if kind not in WAREHOUSE_TYPES:
            raise bad(f"warehouse_type must be PRO or CLASSIC, got {kind!r}")
        if serverless and kind != "PRO":
            raise bad("enable_serverless_compute needs warehouse_type PRO")
        if body.get("spot_instance_policy", "COST_OPTIMIZED") not in SPOT_POLICIES:
            raise bad(f"spot_instance_policy must be one of {', '.join(SPOT_POLICIES)}")
        raw_tags = body.get("tags", {})
        tags = raw_tags.get("custom_tags", []) if isinstance(raw_tags, dict) else None
        if tags is None or not isinstance(tags, list) or not all(
                isinstance(t, dict) and isinstance(t.get("key"), str) for t in tags):
            raise bad("tags must be {\"custom_tags\": [{\"key\", \"value\"}]}")
        if len(tags) >= 45:
            raise bad(f"A warehouse takes fewer than 45 tags, got {len(tags)}")
        if body.get("instance_profile_arn") is not None:
            self.check_aws_attributes({"instance_profile_arn": body["instance_profile_arn"]}, "")
        out = {k: copy.deepcopy(v) for k, v in body.items() if k != "id"}
        out.update({"auto_stop_mins": stop, "min_num_clusters": lo, "max_num_clusters": hi, "warehouse_type": kind,
                    "enable_photon": body.get("enable_photon", True)})
        return out

    def warehouse_create(self, body: dict) -> dict:
        self.require_admin("create SQL warehouses")
        fields = self.warehouse_fields(body, None)
        wid = new_hex(lambda h: h in self.warehouses, 16, f"{self.name}:warehouse")  # type: ignore[attr-defined]
        me = self.principal()["user_name"]  # type: ignore[attr-defined]
        w = {"id": wid, **fields, "creator_name": me, "state": "STARTING", "num_clusters": 0}
        self.state["warehouses"].append(w)
        self.warehouses[wid] = w
        self.state["permissions"].pop(f"warehouses/{wid}", None)
        self.transitions[wid] = (time.monotonic() + self.warehouse_delay, "RUNNING")
        return {"id": wid}

    def warehouse_edit(self, wid: str, body: dict) -> dict:
        self.require_admin("edit SQL warehouses")
        w = self.warehouse(wid)  # type: ignore[attr-defined]
        fields = self.warehouse_fields(body, wid)
        state = {k: w[k] for k in ("id", "state", "creator_name", "num_clusters") if k in w}
        w.clear()
        w.update(fields)
        w.update(state)
        return {}

    def warehouse_delete(self, wid: str) -> dict:
        self.require_admin("delete SQL warehouses")
        w = self.warehouse(wid)  # type: ignore[attr-defined]
        self.state["warehouses"] = [x for x in self.state["warehouses"] if x is not w]
        del self.warehouses[wid]
        self.transitions.pop(wid, None)
        self.state["permissions"].pop(f"warehouses/{wid}", None)
        return {}

    # --- Unity Catalog: catalogs, schemas ----------------------------------------------------------------------
    def check_storage_root(self, root: Any) -> None:
        if root is None:
            return
        if not isinstance(root, str) or "://" not in root:
            raise bad(f"storage_root must be a URL, got {root!r}")
        urls = [str(e.get("url", "")).rstrip("/") for e in self.state["external_locations"]]
        if not any(root.rstrip("/") == u or root.startswith(u + "/") for u in urls if u):
            raise bad(f"storage_root {root} is not under any external location of this metastore")

    def uc_entity(self, body: dict, full_name: str, securable: str) -> dict:
        if not self.state["metastore"]:
            raise missing("No metastore assigned for the current workspace.", "METASTORE_DOES_NOT_EXIST")
        self.check_storage_root(body.get("storage_root"))
        props = body.get("properties", {})
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise bad("properties must map strings to strings")
        me = self.principal()["user_name"]  # type: ignore[attr-defined]
        now = int(time.time() * 1000)
        keep = {k: copy.deepcopy(v) for k, v in body.items() if k in ("comment", "properties", "storage_root")}
        return {**keep, "full_name": full_name, "owner": me, "created_at": now, "created_by": me, "updated_at": now,
                "metastore_id": self.state["metastore"].get("metastore_id"), "securable_type": securable}

    def catalog_create(self, body: dict) -> dict:
        self.require_admin("create catalogs (CREATE_CATALOG on the metastore)")
        name = string_field(body, "name", True, 255)
        if any(c.lower() == name.lower() for c in self.catalogs):
            raise Rejected(409, "CATALOG_ALREADY_EXISTS", f"Catalog '{name}' already exists.")
        catalog = {"name": name, **self.uc_entity(body, name, "CATALOG"), "catalog_type": "MANAGED_CATALOG"}
        self.state["catalogs"].append(catalog)
        self.catalogs[name] = catalog
        return catalog

    def find_catalog(self, name: str) -> dict:
        catalog = self.catalogs.get(name)
        if catalog is None:
            raise missing(f"Catalog '{name}' does not exist.", "CATALOG_DOES_NOT_EXIST")
        return catalog

    def check_update(self, body: dict, allowed: tuple) -> None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise bad(f"These fields cannot be updated: {', '.join(unknown)} (updatable: {', '.join(allowed)})")
        if body.get("owner") is not None:
            self.check_identity(body["owner"], "owner")

    def catalog_update(self, name: str, body: dict) -> dict:
        self.require_admin("update catalogs")
        catalog = self.find_catalog(name)
        self.check_update(body, ("comment", "owner", "properties", "isolation_mode", "enable_predictive_optimization"))
        catalog.update(copy.deepcopy(body))
        catalog["updated_at"] = int(time.time() * 1000)
        return catalog

    def catalog_delete(self, name: str, force: bool) -> dict:
        self.require_admin("delete catalogs")
        catalog = self.find_catalog(name)
        if self.schemas.get(name) and not force:
            raise bad(f"Catalog '{name}' is not empty: delete its schemas or pass force=true")
        self.state["catalogs"] = [c for c in self.state["catalogs"] if c is not catalog]
        del self.catalogs[name]
        for schema in self.schemas.pop(name, []):
            self.schema_names.discard(f"{name}.{schema['name']}")
        self.state["schemas"] = [s for s in self.state["schemas"] if s["catalog_name"] != name]
        return {}

    def schema_create(self, body: dict) -> dict:
        self.require_admin("create schemas (USE_CATALOG and CREATE_SCHEMA on the catalog)")
        name = string_field(body, "name", True, 255)
        catalog = string_field(body, "catalog_name", True)
        self.find_catalog(catalog)
        if any(s["name"].lower() == name.lower() for s in self.schemas.get(catalog, [])):
            raise Rejected(409, "SCHEMA_ALREADY_EXISTS", f"Schema '{catalog}.{name}' already exists.")
        schema = {"name": name, "catalog_name": catalog, **self.uc_entity(body, f"{catalog}.{name}", "SCHEMA")}
        self.state["schemas"].append(schema)
        self.schemas.setdefault(catalog, []).append(schema)
        self.schema_names.add(f"{catalog}.{name}")
        return schema

    def find_schema(self, full_name: str) -> dict:
        catalog, _, name = full_name.partition(".")
        for s in self.schemas.get(catalog, []):
            if s["name"] == name:
                return s
        raise missing(f"Schema '{full_name}' does not exist.", "SCHEMA_DOES_NOT_EXIST")

    def schema_update(self, full_name: str, body: dict) -> dict:
        self.require_admin("update schemas")
        schema = self.find_schema(full_name)
        self.check_update(body, ("comment", "owner", "properties", "enable_predictive_optimization"))
        schema.update(copy.deepcopy(body))
        schema["updated_at"] = int(time.time() * 1000)
        return schema

    def schema_delete(self, full_name: str) -> dict:
        self.require_admin("delete schemas")
        schema = self.find_schema(full_name)
        catalog = schema["catalog_name"]
        self.schemas[catalog] = [s for s in self.schemas[catalog] if s is not schema]
        self.schema_names.discard(full_name)
        self.state["schemas"] = [s for s in self.state["schemas"] if s is not schema]
        return {}

    # --- Unity Catalog grants ----------------------------------------------------------------------------------
    def uc_permissions_update(self, securable_type: str, full_name: str, body: dict) -> dict:
        kind = securable_type.lower()
        self.uc_permissions(securable_type, full_name)  # type: ignore[attr-defined]  # exists, or the 404
        self.require_admin("change grants (MANAGE on the securable, or its owner)")
        changes = body.get("changes", [])
        if not isinstance(changes, list):
            raise bad("changes must be a list of {principal, add, remove}")
        allowed = PRIVILEGES.get(kind, set())
        key = f"{kind}/{full_name}"
        assignments = copy.deepcopy(self.state["grants"].get(key, []))
        for i, change in enumerate(changes):
            if not isinstance(change, dict) or not isinstance(change.get("principal"), str) or not change["principal"]:
                raise bad(f"changes[{i}] must name a principal")
            self.check_identity(change["principal"], "grant")
            for verb in ("add", "remove"):
                privileges = change.get(verb, [])
                if not isinstance(privileges, list):
                    raise bad(f"changes[{i}].{verb} must be a list of privileges")
                for p in privileges:
                    if p not in allowed:
                        raise bad(f"Privilege {p} is not applicable to this entity [{kind}:{full_name}]")
            entry = next((a for a in assignments if a.get("principal") == change["principal"]), None)
            if entry is None:
                entry = {"principal": change["principal"], "privileges": []}
                assignments.append(entry)
            held = [p for p in entry.get("privileges", []) if p not in change.get("remove", [])]
            held += [p for p in change.get("add", []) if p not in held]
            entry["privileges"] = held
        self.state["grants"][key] = [a for a in assignments if a.get("privileges")]
        return {"privilege_assignments": self.state["grants"][key]}

    # --- object permissions (ACLs) -----------------------------------------------------------------------------
    def check_acl(self, kind: str, acl: Any, replace: bool = False) -> None:
        if not isinstance(acl, list):
            raise bad("access_control_list must be a list")
        owners = 0
        for i, entry in enumerate(acl):
            named = [f for f in PRINCIPAL_FIELDS if isinstance(entry, dict) and entry.get(f)]
            if len(named) != 1:
                raise bad(f"access_control_list[{i}] must name exactly one of {', '.join(PRINCIPAL_FIELDS)}")
            level = entry.get("permission_level")
            if level not in LEVELS[kind]:
                raise bad(f"access_control_list[{i}]: permission level {level!r} is not one of "
                          f"{', '.join(sorted(LEVELS[kind]))} for {kind}")
            if level == "IS_OWNER":
                owners += 1
                if named[0] == "group_name":
                    raise bad(f"access_control_list[{i}]: a group cannot own a {kind[:-1]}")
            self.check_identity(entry[named[0]], "permission")
        if owners > 1:
            raise bad(f"A {kind[:-1]} has exactly one owner; the list names {owners}")
        # A PUT replaces the job's direct permissions, its owner's too: the API refuses one that names no owner
        # ("The job must have exactly one owner.", databricks/cli issues 3849 and 5682, whose direct engine sent
        # such a PUT; Terraform's databricks_permissions docs: "A job must have exactly one owner").
        if replace and kind == "jobs" and owners != 1:
            raise bad("The job must have exactly one owner.")

    def default_acl(self, kind: str, oid: str) -> dict:
        """The ACL of an object no write has set: a job or warehouse is owned by its creator, workspace admins
        holding CAN_MANAGE inherited from the root object (https://docs.databricks.com/jobs/privileges.html,
        "Default privileges for jobs"; warehouses have an owner too, sql.py WarehousePermissionLevel.IS_OWNER)."""
        object_type, prefix = PERMISSION_PATHS[kind]
        acl: list = []
        creator = None
        if kind == "jobs":
            creator = (self.jobs.get(int(oid)) or {}).get("creator_user_name") if oid.isdigit() else None
        elif kind == "warehouses":
            creator = (self.warehouses.get(oid) or {}).get("creator_name")
        if kind in ("jobs", "warehouses"):
            if creator:
                acl.append({"user_name": creator,
                            "all_permissions": [{"permission_level": "IS_OWNER", "inherited": False}]})
            acl.append({"group_name": "admins", "all_permissions": [
                {"permission_level": "CAN_MANAGE", "inherited": True, "inherited_from_object": [prefix]}]})
        return {"object_id": prefix + oid, "object_type": object_type, "access_control_list": acl}

    def store_acl(self, kind: str, oid: str, acl: list, replace: bool) -> dict:
        """PUT (`replace`) sets the direct permissions and keeps the inherited ones; PATCH adds or changes the
        levels of the principals it names. A new owner takes ownership from the old one."""
        key = f"{kind}/{oid}"
        stored = copy.deepcopy(self.state["permissions"].get(key) or self.default_acl(kind, oid))

        def who(e: dict) -> tuple:
            return next((f, e[f]) for f in PRINCIPAL_FIELDS if e.get(f))

        # principal -> its permission items, inherited ones first
        current: dict = {who(e): list(e.get("all_permissions", [])) for e in stored.get("access_control_list", [])}
        new_owner = any(e.get("permission_level") == "IS_OWNER" for e in acl)
        for k, items in current.items():
            current[k] = [p for p in items if p.get("inherited")
                          or not (replace or (new_owner and p.get("permission_level") == "IS_OWNER"))]
        named: set = set()
        for e in acl:
            items = current.setdefault(who(e), [])
            if not replace and who(e) not in named:
                # PATCH sets the principal's direct levels (inherited items stay).
                items[:] = [p for p in items if p.get("inherited")]
            named.add(who(e))
            items.append({"permission_level": e["permission_level"], "inherited": False})
        stored["access_control_list"] = [{f: n, "all_permissions": items} for (f, n), items in current.items() if items]
        self.state["permissions"][key] = stored
        return stored

    def permissions_write(self, parts: list[str], body: dict, replace: bool) -> dict:
        if parts[:2] == ["sql", "warehouses"]:
            parts = ["warehouses", *parts[2:]]
        if len(parts) != 2 or parts[0] not in LEVELS:
            raise bad(f"Unsupported object type: {'/'.join(parts[:-1])}")
        kind, oid = parts
        self.object_permissions([kind, oid])  # type: ignore[attr-defined]  # exists, or the 404
        acl = body.get("access_control_list", [])
        self.check_acl(kind, acl, replace)
        return self.store_acl(kind, oid, acl, replace)

    # --- routing -----------------------------------------------------------------------------------------------
    def write_route(self, method: str, parts: list[str], route: str, query: dict, body: Any) -> dict | None:
        """The answer to a call this mixin serves, or None when the route is not one of its."""
        if method == "GET":
            if route == "2.0/policies/clusters/get":
                return self.find_policy(query.get("policy_id"))
            if route == "2.0/instance-pools/get":
                return self.find_pool(query.get("instance_pool_id"))
            if route.startswith("2.1/unity-catalog/catalogs/") and len(parts) == 6:
                return self.find_catalog(parts[5])
            if route.startswith("2.1/unity-catalog/schemas/") and len(parts) == 6:
                return self.find_schema(parts[5])
            return None
        if method == "DELETE":
            if route.startswith("2.0/sql/warehouses/") and len(parts) == 6:
                return self.warehouse_delete(parts[5])
            if route.startswith("2.1/unity-catalog/catalogs/") and len(parts) == 6:
                return self.catalog_delete(parts[5], query.get("force", "").lower() == "true")
            if route.startswith("2.1/unity-catalog/schemas/") and len(parts) == 6:
                return self.schema_delete(parts[5])
            return None
        if method not in ("POST", "PATCH", "PUT"):
            return None
        if not isinstance(body, dict):
            raise Rejected(400, "MALFORMED_REQUEST", "The request body must be a JSON object.")
        if method == "POST":
            posts: dict[str, Callable[[dict], dict]] = {
                "2.2/jobs/create": self.jobs_create, "2.1/jobs/create": self.jobs_create,
                "2.2/jobs/delete": self.jobs_delete, "2.1/jobs/delete": self.jobs_delete,
                "2.0/policies/clusters/create": self.policy_create, "2.0/policies/clusters/edit": self.policy_edit,
                "2.0/policies/clusters/delete": self.policy_delete,
                "2.0/instance-pools/create": self.pool_create, "2.0/instance-pools/edit": self.pool_edit,
                "2.0/instance-pools/delete": self.pool_delete,
                "2.0/sql/warehouses": self.warehouse_create,
                "2.1/unity-catalog/catalogs": self.catalog_create, "2.1/unity-catalog/schemas": self.schema_create,
            }
            if route in posts:
                return posts[route](body)
            if route.startswith("2.0/sql/warehouses/") and len(parts) == 7 and parts[6] == "edit":
                return self.warehouse_edit(parts[5], body)
            return None
        if method == "PATCH":
            if route.startswith("2.1/unity-catalog/catalogs/") and len(parts) == 6:
                return self.catalog_update(parts[5], body)
            if route.startswith("2.1/unity-catalog/schemas/") and len(parts) == 6:
                return self.schema_update(parts[5], body)
            if route.startswith("2.1/unity-catalog/permissions/") and len(parts) >= 7:
                return self.uc_permissions_update(parts[5], "/".join(parts[6:]), body)
        if method in ("PATCH", "PUT") and route.startswith("2.0/permissions/") and len(parts) >= 6:
            return self.permissions_write(parts[4:], body, replace=method == "PUT")
        return None
