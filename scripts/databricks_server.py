"""A local Databricks workspace REST API for tests and the demo: one process, N independent workspaces.

    python3 scripts/databricks_server.py --workspaces primary,secondary [--default-credentials]
        [--warehouse-delay 0.2] [--latency-ms 150]

Each workspace listens on its own free 127.0.0.1 port. Once all listen, one JSON line is printed on stdout,
{"primary": "http://127.0.0.1:PORT", ...}; the process stops when stdin closes (as scripts/moto_server.py: whoever
started it cannot leave it running behind, even when killed).

The API (Python standard library only, HTTP/1.1 keep-alive, a lock around each workspace's state) answers as
the Databricks REST reference documents: snake_case JSON, errors {"error_code", "message"} with their HTTP status,
opaque page tokens. OAuth M2M at POST /oidc/v1/token; every /api/ call needs "Authorization: Bearer" with a
configured personal access token or an unexpired issued OAuth token.

With --default-credentials, workspace NAME starts with the PAT "dapi-local-NAME" and the OAuth client
"local-client-NAME" / "local-secret-NAME"; without, with no credentials (POST /__admin/credentials).

Test control, on each workspace's port, without authentication (see the Rust harness, tests/src/databricks.rs):
  POST|GET /__admin/state          the whole workspace (jobs, clusters, ..., permissions); absent keys = empty
  POST /__admin/credentials        {"pats": [...], "oauth_clients": {"id": "secret"}, "token_ttl_seconds": 3600}
  POST /__admin/expire_tokens      every issued OAuth token expires; {"pats": [...]} also revokes those PATs
  POST|GET|DELETE /__admin/faults  rules [{"path_prefix", "method"?, "status"?, "retry_after"?, "delay_ms"?,
                                   "mode": "hang"|"late"?, "error_code"?, "message"?, "location"?, "times"?}], first match
                                   applies; "location" answers a redirect (status 302 unless given) to it
  GET|DELETE /__admin/requests     every /api/ and /oidc/ request received, in order
  POST /__admin/settings           {"warehouse_delay_seconds": 0.2, "latency_ms": 150, "statement_seconds": 0.3,
                                   "sql_chunk_rows": 1000} (any of them)

The SQL Statement Execution API (POST /api/2.0/sql/statements, GET .../{id}, GET .../{id}/result/chunks/{n}) answers
the statements the export sends over system.information_schema (tables, table_privileges, schema_privileges,
catalog_privileges) from the workspace's state; see Workspace.statement_execute.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import secrets
import sys
import threading
import re
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from databricks_writes import Rejected, Writes

# Server-side page sizes when the request names none (small, so that clients really page), and the largest honoured.
JOBS_DEFAULT, JOBS_MAX = 20, 100
TASKS_PAGE = 100
# The arrays of a job's settings that jobs/get (API 2.2) pages, TASKS_PAGE of each per page.
JOB_PAGED_ARRAYS = ("tasks", "job_clusters", "parameters", "environments")
CLUSTERS_DEFAULT, CLUSTERS_MAX = 20, 100
WAREHOUSES_DEFAULT, WAREHOUSES_MAX = 20, 100
UC_DEFAULT, UC_MAX = 50, 1000
REPOS_PAGE = 20
# How long clusters/list keeps listing an unpinned terminated cluster (see Workspace.clusters_list).
CLUSTER_WINDOW_MS = 30 * 24 * 3600 * 1000
VECTOR_PAGE = 20

LIST_KEYS = (
    "jobs", "clusters", "cluster_policies", "instance_pools", "warehouses", "catalogs", "schemas", "tables",
    "volumes", "external_locations", "storage_credentials", "registered_models", "serving_endpoints", "repos",
    "workspace_objects", "secret_scopes",
)
OBJECT_KEYS = ("metastore", "grants", "vector_search", "permissions", "principals", "site")
# The field that identifies an object of each list (unique within the workspace).
ID_FIELDS = {
    "jobs": "job_id", "clusters": "cluster_id", "cluster_policies": "policy_id", "instance_pools": "instance_pool_id",
    "warehouses": "id", "catalogs": "name", "external_locations": "name", "storage_credentials": "name",
    "serving_endpoints": "name", "repos": "id", "workspace_objects": "path", "secret_scopes": "name",
}
PERMISSION_TYPES = {"jobs": ("job", "/jobs/"), "clusters": ("cluster", "/clusters/"),
                    "warehouses": ("warehouse", "/sql/warehouses/"),
                    "cluster-policies": ("cluster-policy", "/cluster-policies/"),
                    "instance-pools": ("instance-pool", "/instance-pools/")}
REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
           308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
FAULT_CODES = {429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "TEMPORARILY_UNAVAILABLE",
               504: "DEADLINE_EXCEEDED", 400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED",
               403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or []

    def body(self) -> dict:
        return {"error_code": self.code, "message": self.message}


class BadDocument(Exception):
    pass


def bad_param(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def not_found(message: str, code: str = "RESOURCE_DOES_NOT_EXIST") -> ApiError:
    return ApiError(404, code, message)


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, number = text.partition(":")
        offset = int(number)
        if kind != "offset" or offset < 0:
            raise ValueError
        return offset
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_param(f"Invalid page token: {token!r}") from None


def page_size(query: dict, name: str, default: int, largest: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise bad_param(f"{name} must be an integer, got {raw!r}") from None
    if n < 0:
        raise bad_param(f"{name} must not be negative, got {n}")
    if n == 0:
        return default
    return min(n, largest)


def paged(items: list, offset: int, size: int) -> tuple[list, str | None, str | None]:
    """The page at offset, the next page's token (None on the last page) and the previous page's."""
    page = items[offset:offset + size]
    following = encode_token(offset + size) if offset + size < len(items) else None
    previous = encode_token(max(0, offset - size)) if offset > 0 else None
    return page, following, previous


def with_tokens(body: dict, following: str | None, previous: str | None = None, prev: bool = False) -> dict:
    if following:
        body["next_page_token"] = following
    if prev and previous:
        body["prev_page_token"] = previous
    return body


def require(query: dict, name: str) -> str:
    value = query.get(name)
    if not value:
        raise bad_param(f"Missing required field: {name}")
    return value


def parent_of(path: str) -> str:
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def stable_id(text: str) -> int:
    h = 1469598103934665603
    for b in text.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % 10**15


def validate(doc: Any) -> dict:
    """The state document with every key present, or BadDocument saying what is wrong."""
    if not isinstance(doc, dict):
        raise BadDocument("the state must be a JSON object")
    unknown = sorted(set(doc) - set(LIST_KEYS) - set(OBJECT_KEYS))
    if unknown:
        raise BadDocument(f"unknown keys: {', '.join(unknown)}")
    state: dict = {}
    for key in LIST_KEYS:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
            raise BadDocument(f"{key} must be a list of objects")
        field = ID_FIELDS.get(key)
        if field:
            seen = set()
            for i, o in enumerate(value):
                if field not in o:
                    raise BadDocument(f"{key}[{i}] has no {field}")
                if o[field] in seen:
                    raise BadDocument(f"{key}: duplicate {field} {o[field]!r}")
                seen.add(o[field])
        state[key] = value
    for i, job in enumerate(state["jobs"]):
        if not isinstance(job["job_id"], int) or isinstance(job["job_id"], bool):
            raise BadDocument(f"jobs[{i}].job_id must be an integer")
        if not isinstance(job.get("settings"), dict):
            raise BadDocument(f"jobs[{i}] has no settings object")
    for key, fields in (("schemas", ("catalog_name", "name")), ("tables", ("catalog_name", "schema_name", "name")),
                        ("volumes", ("catalog_name", "schema_name", "name"))):
        for i, o in enumerate(state[key]):
            for f in fields:
                if not isinstance(o.get(f), str):
                    raise BadDocument(f"{key}[{i}].{f} must be a string")
    for i, o in enumerate(state["workspace_objects"]):
        if not isinstance(o["path"], str) or not o["path"].startswith("/"):
            raise BadDocument(f"workspace_objects[{i}].path must be an absolute path")
        if o.get("object_type") not in ("NOTEBOOK", "DIRECTORY", "FILE", "REPO", "LIBRARY", "DASHBOARD"):
            raise BadDocument(f"workspace_objects[{i}].object_type must be NOTEBOOK, DIRECTORY, FILE, REPO or LIBRARY")
    for i, o in enumerate(state["secret_scopes"]):
        if not isinstance(o.get("acls", []), list):
            raise BadDocument(f"secret_scopes[{i}].acls must be a list")
    metastore = doc.get("metastore", {})
    if not isinstance(metastore, dict):
        raise BadDocument("metastore must be an object")
    state["metastore"] = metastore
    grants = doc.get("grants", {})
    if not isinstance(grants, dict) or not all(isinstance(v, list) and "/" in k for k, v in grants.items()):
        raise BadDocument('grants must map "securable_type/full_name" to a list of privilege assignments')
    state["grants"] = grants
    vector = doc.get("vector_search", {})
    if not isinstance(vector, dict) or not set(vector) <= {"enabled", "endpoints", "indexes"}:
        raise BadDocument("vector_search must be {enabled, endpoints, indexes}")
    if not isinstance(vector.get("enabled", True), bool) or not all(
            isinstance(vector.get(k, []), list) for k in ("endpoints", "indexes")):
        raise BadDocument("vector_search.enabled must be a boolean, endpoints and indexes lists")
    state["vector_search"] = vector
    permissions = doc.get("permissions", {})
    if not isinstance(permissions, dict) or not all(
            isinstance(v, dict) and k.split("/", 1)[0] in PERMISSION_TYPES and "/" in k for k, v in permissions.items()):
        raise BadDocument('permissions must map "jobs/ID", "clusters/ID", "warehouses/ID", "cluster-policies/ID" or '
                          '"instance-pools/ID" to an object')
    state["permissions"] = permissions
    principals = doc.get("principals", {})
    if not isinstance(principals, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("user_name"), str) and isinstance(v.get("admin", False), bool)
            and isinstance(v.get("groups", []), list) for v in principals.values()):
        raise BadDocument('principals must map a PAT or an OAuth client id to {"user_name", "admin"?, "groups"?}')
    state["principals"] = principals
    # What this site knows (see scripts/databricks_writes.py): lists of zones, registered instance profiles and
    # identities; a value outside a given list is refused as a real workspace in another region refuses it.
    site = doc.get("site", {})
    if not isinstance(site, dict) or not set(site) <= {"zones", "instance_profiles", "identities"} or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in site.values()):
        raise BadDocument('site must be {"zones"?, "instance_profiles"?, "identities"?}, each a list of strings')
    state["site"] = site
    return state


class Workspace(Writes):
    """One workspace: its state, credentials, fault rules and request record, under one lock. The write calls
    (create, edit, delete, grants, permissions) are in scripts/databricks_writes.py."""

    def __init__(self, name: str, warehouse_delay: float, latency: float = 0.0) -> None:
        self.name = name
        # Seconds every /api/ and /oidc/ answer takes at least, as a real workspace across a region does
        # (POST /__admin/settings {"latency_ms": 150}; --latency-ms).
        self.latency = latency
        self.lock = threading.Lock()
        self.released = threading.Condition(self.lock)
        self.hang_generation = 0
        self.warehouse_delay = warehouse_delay
        self.pats: set[str] = set()
        self.oauth_clients: dict[str, str] = {}
        self.token_ttl = 3600.0
        self.tokens: dict[str, float] = {}  # issued OAuth token -> expiry (monotonic)
        self.token_clients: dict[str, str] = {}  # issued OAuth token -> the client it was issued to
        self.caller = ""  # the credential (PAT or OAuth client id) of the call being answered
        self.faults: list[dict] = []
        self.requests: list[dict] = []
        self.transitions: dict[str, tuple[float, str]] = {}  # warehouse id -> (when, state then)
        # The SQL Statement Execution API: how long a statement runs once its warehouse runs, the rows of one
        # INLINE chunk (the real API cuts chunks by bytes; rows make chunking testable), the statements issued.
        self.statement_seconds = 0.3
        self.sql_chunk_rows = 1000
        self.statements: dict[str, dict] = {}
        self.set_state(validate({}))

    # --- state -----------------------------------------------------------------------------------------------
    def set_state(self, state: dict) -> None:
        self.state = state
        self.transitions = {}
        s = state
        self.jobs = {j["job_id"]: j for j in s["jobs"]}
        self.clusters = {c["cluster_id"]: c for c in s["clusters"]}
        self.warehouses = {w["id"]: w for w in s["warehouses"]}
        self.catalogs = {c["name"]: c for c in s["catalogs"]}
        self.schemas: dict[str, list] = {}
        self.schema_names: set[str] = set()
        for o in s["schemas"]:
            self.schemas.setdefault(o["catalog_name"], []).append(o)
            self.schema_names.add(f"{o['catalog_name']}.{o['name']}")
        self.tables: dict[tuple[str, str], list] = {}
        self.table_names: set[str] = set()
        for o in s["tables"]:
            self.tables.setdefault((o["catalog_name"], o["schema_name"]), []).append(o)
            self.table_names.add(f"{o['catalog_name']}.{o['schema_name']}.{o['name']}")
        self.volumes: dict[tuple[str, str], list] = {}
        self.volume_names: set[str] = set()
        for o in s["volumes"]:
            self.volumes.setdefault((o["catalog_name"], o["schema_name"]), []).append(o)
            self.volume_names.add(f"{o['catalog_name']}.{o['schema_name']}.{o['name']}")
        self.model_names = {m.get("full_name") or f"{m.get('catalog_name')}.{m.get('schema_name')}.{m.get('name')}"
                            for m in s["registered_models"]}
        self.scopes = {o["name"]: o for o in s["secret_scopes"]}
        # The workspace tree: every seeded object, and the directories above it (synthesized when not seeded).
        objects: dict[str, dict] = {o["path"].rstrip("/") or "/": o for o in s["workspace_objects"]}
        # A Git folder is in the tree wherever it lives (/Repos/..., a user's home, /Shared), as object_type REPO
        # with the repo's id as object_id, unless seeded as it shows with Git CLI access: a DIRECTORY with
        # directory_info.is_git_folder (https://docs.databricks.com/api/workspace/workspace/list, ObjectInfo;
        # https://docs.databricks.com/gcp/en/repos/migrate-list-repos, "Identify Git folders").
        self.repos = {str(r["id"]): r for r in s["repos"]}
        for r in s["repos"]:
            path = str(r.get("path", "")).rstrip("/")
            if path.startswith("/") and path not in objects:
                objects[path] = {"object_type": "REPO", "path": path, "object_id": r["id"]}
        for path in list(objects):
            p = parent_of(path)
            while p != "/" and p not in objects:
                objects[p] = {"object_type": "DIRECTORY", "path": p, "object_id": stable_id(p)}
                p = parent_of(p)
        self.objects = objects
        self.children: dict[str, list] = {"/": []}
        for path in sorted(objects):
            if path != "/":
                self.children.setdefault(parent_of(path), []).append(objects[path])

    def tick(self, now: float) -> None:
        """Warehouses whose start (stop) has taken its time are RUNNING (STOPPED)."""
        if not self.transitions:
            return
        for wid, (when, then) in list(self.transitions.items()):
            if now >= when:
                w = self.warehouses.get(wid)
                if w is not None:
                    w["state"] = then
                del self.transitions[wid]

    # --- authentication --------------------------------------------------------------------------------------
    def authenticate(self, header: str, now: float) -> tuple[str, ApiError | None]:
        """(kind for the record, the error to answer or None)."""
        if not header:
            return "none", ApiError(401, "UNAUTHENTICATED", "No authorization header: a bearer token is required.")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "basic":
            return "basic", ApiError(401, "UNAUTHENTICATED", "Basic authentication is not accepted: use a bearer token.")
        if scheme.lower() != "bearer" or not token:
            return "bad", ApiError(401, "UNAUTHENTICATED", "Malformed authorization header.")
        if token in self.pats:
            return "bearer-pat", None
        expiry = self.tokens.get(token)
        if expiry is not None:
            if now < expiry:
                return "bearer-oauth", None
            return "bad", ApiError(401, "UNAUTHENTICATED", "Invalid access token: the token expired.")
        return "bad", ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def issue_token(self, form: dict, header: str, now: float) -> tuple[int, dict]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(encoded.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return 401, {"error": "invalid_client", "error_description": "Malformed basic authorization."}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": f"grant_type {form.get('grant_type')!r} is not supported"}
        if not client_id or self.oauth_clients.get(client_id) is None or self.oauth_clients[client_id] != secret:
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed."}
        token = "eyJ" + secrets.token_urlsafe(32)
        self.tokens[token] = now + self.token_ttl
        self.token_clients[token] = client_id
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl),
                     "scope": form.get("scope") or "all-apis"}

    # --- faults ----------------------------------------------------------------------------------------------
    # A rule applies to any method it names (or all): a real workspace answers 429 REQUEST_LIMIT_EXCEEDED and 503
    # TEMPORARILY_UNAVAILABLE with Retry-After (seconds) to GETs and POSTs alike, which is why the official SDKs
    # retry both on every method (databricks-sdk-go apierr/errors.go IsRetriable; databricks-sdk-py
    # databricks/sdk/_base_client.py _is_retryable and errors/customizer.py _RetryAfterCustomizer).
    def match_fault(self, method: str, path: str) -> dict | None:
        for rule in self.faults:
            if not path.startswith(rule.get("path_prefix", "")):
                continue
            if rule.get("method") and rule["method"].upper() != method:
                continue
            left = rule.get("_left")
            if left is not None:
                if left <= 0:
                    continue
                rule["_left"] = left - 1
            return rule
        return None

    # --- the API ---------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, query: dict, body: Any) -> dict:
        """The answer to an authenticated /api/ call (the lock held), or ApiError."""
        parts = [unquote(p) for p in path.rstrip("/").split("/")]  # "", "api", version, ...
        route = "/".join(parts[2:])
        try:
            written = self.write_route(method, parts, route, query, body)
        except Rejected as e:
            raise ApiError(e.status, e.code, e.message) from None
        if written is not None:
            return written
        if method == "GET":
            handler = GETS.get(route)
            if handler:
                return handler(self, query)
            if route.startswith("2.0/sql/warehouses/") and len(parts) == 6:
                return self.warehouse(parts[5])
            if route.startswith("2.0/repos/") and len(parts) == 5:
                return self.repo(parts[4])
            if route.startswith("2.1/unity-catalog/permissions/") and len(parts) >= 7:
                return self.uc_permissions(parts[5], "/".join(parts[6:]))
            if route.startswith("2.0/permissions/") and len(parts) >= 6:
                return self.object_permissions(parts[4:])
            if route.startswith("2.0/sql/statements/") and len(parts) == 6:
                return self.statement_get(parts[5])
            if route.startswith("2.0/sql/statements/") and len(parts) == 9 and parts[6:8] == ["result", "chunks"]:
                return self.statement_chunk(parts[5], parts[8])
        elif method == "POST":
            if not isinstance(body, dict):
                raise ApiError(400, "MALFORMED_REQUEST", "The request body must be a JSON object.")
            if route in ("2.2/jobs/update", "2.1/jobs/update"):
                return self.jobs_update(body, reset=False)
            if route in ("2.2/jobs/reset", "2.1/jobs/reset"):
                return self.jobs_update(body, reset=True)
            if route.startswith("2.0/sql/warehouses/") and len(parts) == 7 and parts[6] in ("start", "stop"):
                return self.warehouse_start_stop(parts[5], parts[6])
            if route == "2.0/sql/statements":
                return self.statement_execute(body)
        known = route in GETS or route.startswith(("2.0/sql/warehouses/", "2.2/jobs/", "2.1/jobs/", "2.0/permissions/",
                                                   "2.1/unity-catalog/"))
        if known:
            raise ApiError(405, "INVALID_STATE", f"{method} is not supported on {path}")
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def principal(self) -> dict:
        """Who the current call's credential acts as: seeded under "principals" by PAT or OAuth client id; else
        a workspace admin (so that a workspace seeded without principals answers everything)."""
        p = self.state["principals"].get(self.caller)
        if p is None:
            return {"user_name": "local-admin@example.com", "admin": True, "groups": []}
        return p

    def me(self, q: dict) -> dict:
        # GET /api/2.0/preview/scim/v2/Me: the caller as a SCIM User; workspace admins are members of the group
        # "admins" (https://docs.databricks.com/api/workspace/currentuser/me; databricks-sdk-go service/iam/impl.go
        # CurrentUser.Me and service/iam/model.go User.Groups).
        p = self.principal()
        groups = (["admins"] if p.get("admin") else []) + ["users"] + [g for g in p.get("groups", []) if g != "admins"]
        return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": str(stable_id(p["user_name"])),
                "userName": p["user_name"], "displayName": p["user_name"], "active": True,
                "groups": [{"display": g, "value": str(stable_id(g)), "$ref": f"Groups/{stable_id(g)}"} for g in groups]}

    def can_view_job(self, job: dict) -> bool:
        # Jobs access control: workspace admins have CAN MANAGE on every job, the creator IS OWNER, anyone else
        # needs a permission (CAN VIEW at least) to see a job (https://docs.databricks.com/jobs/privileges.html;
        # https://docs.databricks.com/en/security/auth/access-control/index.html, Jobs ACLs). jobs/list answers the
        # jobs the caller can view.
        p = self.principal()
        if p.get("admin") or job.get("creator_user_name") == p["user_name"]:
            return True
        acl = self.state["permissions"].get(f"jobs/{job['job_id']}", {}).get("access_control_list", [])
        names = {p["user_name"], *p.get("groups", [])}
        return any(names & {e.get("user_name"), e.get("service_principal_name"), e.get("group_name")} for e in acl)

    def jobs_list(self, q: dict) -> dict:
        raw = q.get("limit")
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise bad_param(f"limit must be an integer, got {raw!r}") from None
            if n < 0 or n > JOBS_MAX:
                raise bad_param(f"Invalid limit {n}: must be between 1 and {JOBS_MAX}")
        limit = page_size(q, "limit", JOBS_DEFAULT, JOBS_MAX)
        expand = q.get("expand_tasks", "false").lower() == "true"
        jobs = [j for j in self.state["jobs"] if self.can_view_job(j)]
        if q.get("name"):
            jobs = [j for j in jobs if str(j["settings"].get("name", "")).lower() == q["name"].lower()]
        page, following, previous = paged(jobs, decode_token(q.get("page_token")), limit)
        out = []
        for job in page:
            settings = dict(job["settings"])
            has_more = False
            # jobs/list with expand_tasks shows the first 100 tasks and job clusters and says has_more on the job
            # (https://docs.databricks.com/api/workspace/jobs/list, BaseJob.has_more).
            for key in ("tasks", "job_clusters"):
                if expand:
                    if len(settings.get(key, ())) > TASKS_PAGE:
                        settings[key] = settings[key][:TASKS_PAGE]
                        has_more = True
                else:
                    settings.pop(key, None)
            item = {k: v for k, v in job.items() if k not in ("settings", "run_as_user_name")}
            item["settings"] = settings
            item["has_more"] = has_more
            out.append(item)
        body: dict = {"jobs": out} if out else {}
        body["has_more"] = following is not None
        return with_tokens(body, following, previous, prev=True)

    def job(self, q: dict) -> dict:
        raw = require(q, "job_id")
        try:
            job_id = int(raw)
        except ValueError:
            raise bad_param(f"job_id must be an integer, got {raw!r}") from None
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found(f"Job {job_id} does not exist.")
        if not self.can_view_job(job):
            raise ApiError(403, "PERMISSION_DENIED",
                           f"User {self.principal()['user_name']} does not have View permissions on Job {job_id}.")
        return job

    def jobs_get(self, q: dict) -> dict:
        # Jobs API 2.2 jobs/get pages four arrays together, 100 elements of each per page, with one
        # next_page_token at the root while any has more; a client appends each page's arrays to the first
        # page's (https://docs.databricks.com/api/workspace/jobs/get; databricks-sdk-go service/jobs/ext_api.go
        # JobsAPI.Get merges Tasks, JobClusters, Parameters and Environments).
        job = self.job(q)
        offset = decode_token(q.get("page_token"))
        settings = dict(job["settings"])
        more = False
        for key in JOB_PAGED_ARRAYS:
            if key in settings:
                items = settings[key]
                settings[key] = items[offset:offset + TASKS_PAGE]
                more = more or offset + TASKS_PAGE < len(items)
        out = {k: v for k, v in job.items() if k != "settings"}
        out["settings"] = settings
        if more:
            out["next_page_token"] = encode_token(offset + TASKS_PAGE)
        return out

    def jobs_update(self, body: dict, reset: bool) -> dict:
        if "job_id" not in body:
            raise bad_param("Missing required field: job_id")
        job = self.job({"job_id": str(body["job_id"])})
        settings = body.get("new_settings")
        if reset and not isinstance(settings, dict):
            raise bad_param("Missing required field: new_settings")
        if settings is not None and not isinstance(settings, dict):
            raise bad_param("new_settings must be an object")
        remove = body.get("fields_to_remove", [])
        if not isinstance(remove, list):
            raise bad_param("fields_to_remove must be a list")
        # reset validates the whole new settings as jobs/create does; update checks what a partial change can
        # break: the merged settings' triggers (see scripts/databricks_writes.py for the rules and their sources).
        if reset:
            merged = copy.deepcopy(settings)
        else:
            merged = dict(job["settings"])
            for key, value in (settings or {}).items():
                merged[key] = copy.deepcopy(value)
            for key in remove:
                merged.pop(key, None)
        try:
            self.check_job_settings(merged) if reset else self.check_triggers(merged)
        except Rejected as e:
            raise ApiError(e.status, e.code, e.message) from None
        job["settings"] = merged
        return {}

    def clusters_list(self, q: dict) -> dict:
        # clusters/list returns "all pinned and active clusters, and all clusters terminated within the last 30
        # days. Clusters terminated prior to this period are not included."
        # (https://docs.databricks.com/api/workspace/clusters/list; databricks-sdk-go service/compute/api.go
        # ClustersAPI.List). A seeded cluster's "pinned": true (state only, never answered) pins it; its
        # terminated_time (epoch ms, wall clock) places it in or out of the window.
        now_ms = time.time() * 1000
        listed = [{k: v for k, v in c.items() if k != "pinned"} for c in self.state["clusters"]
                  if c.get("pinned") or c.get("state") != "TERMINATED"
                  or now_ms - float(c.get("terminated_time") or now_ms) < CLUSTER_WINDOW_MS]
        size = page_size(q, "page_size", CLUSTERS_DEFAULT, CLUSTERS_MAX)
        page, following, previous = paged(listed, decode_token(q.get("page_token")), size)
        return with_tokens({"clusters": page}, following, previous, prev=True)

    def policies_list(self, q: dict) -> dict:
        return {"policies": self.state["cluster_policies"], "total_count": len(self.state["cluster_policies"])}

    def pools_list(self, q: dict) -> dict:
        return {"instance_pools": self.state["instance_pools"]}

    def warehouses_list(self, q: dict) -> dict:
        size = page_size(q, "page_size", WAREHOUSES_DEFAULT, WAREHOUSES_MAX)
        page, following, _ = paged(self.state["warehouses"], decode_token(q.get("page_token")), size)
        return with_tokens({"warehouses": page}, following)

    def warehouse(self, wid: str) -> dict:
        w = self.warehouses.get(wid)
        if w is None:
            raise not_found(f"Warehouse {wid} does not exist.")
        return w

    def warehouse_start_stop(self, wid: str, action: str) -> dict:
        w = self.warehouse(wid)
        now = time.monotonic()
        if action == "start" and w.get("state") in ("STOPPED", "STOPPING", None):
            w["state"] = "STARTING"
            self.transitions[wid] = (now + self.warehouse_delay, "RUNNING")
        elif action == "stop" and w.get("state") in ("RUNNING", "STARTING"):
            w["state"] = "STOPPING"
            self.transitions[wid] = (now + self.warehouse_delay, "STOPPED")
        return {}

    # --- SQL Statement Execution API -------------------------------------------------------------------------
    # https://docs.databricks.com/api/workspace/statementexecution (executeStatement, getStatement,
    # getStatementResultChunkN); databricks-sdk-go service/sql model.go (ExecuteStatementRequest,
    # StatementResponse, StatementStatus, ResultManifest, ResultData). States PENDING (waiting for the warehouse),
    # RUNNING, SUCCEEDED, FAILED (status.error {error_code, message}); INLINE results in JSON_ARRAY format are
    # chunks of rows of strings (or null), the first in the statement's `result`, each naming next_chunk_index
    # and next_chunk_internal_link until the last. Polling is the caller's: no Retry-After on these answers.
    # This server does not evaluate SQL: a statement answers the rows of the system.information_schema view it
    # names, keeping only direct grants when it says inherited_from = 'NONE', and only the rows of one catalog
    # when it compares the view's catalog column with the named parameter :catalog (`parameters`:
    # [{"name", "value", "type"}], StatementParameterListItem). An INLINE result over 25 MiB is aborted: FAILED
    # (executeStatement, "disposition").
    INFORMATION_SCHEMA = {
        "tables": ("table_catalog", "table_schema", "table_name", "table_type", "table_owner", "comment", "created",
                   "created_by", "last_altered", "last_altered_by", "data_source_format", "storage_path"),
        "table_privileges": ("grantor", "grantee", "table_catalog", "table_schema", "table_name", "privilege_type",
                             "is_grantable", "inherited_from"),
        "schema_privileges": ("grantor", "grantee", "catalog_name", "schema_name", "privilege_type", "is_grantable",
                              "inherited_from"),
        "catalog_privileges": ("grantor", "grantee", "catalog_name", "privilege_type", "is_grantable",
                               "inherited_from"),
    }

    def view_rows(self, view: str, direct_only: bool, catalog: str | None) -> list[list]:
        """The rows of `view`, of `catalog` only when given (filtered first: a statement runs under the lock)."""
        tables = self.state["tables"] if catalog is None else [
            t for (c, _), ts in self.tables.items() if c == catalog for t in ts]
        def ts(ms: Any) -> str | None:
            if not isinstance(ms, int):
                return None
            return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        def text(v: Any) -> str | None:
            return None if v is None else str(v)

        if view == "tables":
            return [[t["catalog_name"], t["schema_name"], t["name"], text(t.get("table_type")), text(t.get("owner")),
                     text(t.get("comment")), ts(t.get("created_at")), text(t.get("created_by")), ts(t.get("updated_at")),
                     text(t.get("updated_by")), text(t.get("data_source_format")), text(t.get("storage_location"))]
                    for t in tables]
        # A privilege as information_schema spells it: with spaces (USE CATALOG, ALL PRIVILEGES) where the REST
        # API has underscores (https://docs.databricks.com/en/data-governance/unity-catalog/manage-privileges/privileges.html).
        def rows_of(kind: str, names: list[list[str]], inherited: dict[str, list[str]]) -> list[list]:
            out = []
            for parts in names:
                full = ".".join(parts)
                direct = [(g, "NONE") for g in self.state["grants"].get(f"{kind}/{full}", [])]
                # Grants on an ancestor show on every descendant with inherited_from naming it.
                above = [] if direct_only else [
                    (g, anc) for anc in inherited.get(full, []) for g in self.state["grants"].get(anc, [])]
                for g, origin in direct + above:
                    for p in g.get("privileges", []):
                        out.append(["admins", g["principal"], *parts, p.replace("_", " "), "NO",
                                    origin if origin == "NONE" else origin.split("/", 1)[1]])
            return out

        if view == "catalog_privileges":
            return rows_of("catalog", [[c] for c in self.catalogs if catalog in (None, c)], {})
        if view == "schema_privileges":
            names = [[o["catalog_name"], o["name"]] for o in self.state["schemas"] if catalog in (None, o["catalog_name"])]
            return rows_of("schema", names, {".".join(n): [f"catalog/{n[0]}"] for n in names})
        names = [[o["catalog_name"], o["schema_name"], o["name"]] for o in tables]
        return rows_of("table", names, {".".join(n): [f"catalog/{n[0]}", f"schema/{n[0]}.{n[1]}"] for n in names})

    def statement_execute(self, body: dict) -> dict:
        wid, statement = body.get("warehouse_id"), body.get("statement")
        if not isinstance(statement, str) or not statement.strip():
            raise bad_param("statement is required")
        if not isinstance(wid, str) or not wid:
            raise bad_param("warehouse_id is required")
        w = self.warehouse(wid)
        if body.get("disposition", "INLINE") != "INLINE" or body.get("format", "JSON_ARRAY") != "JSON_ARRAY":
            raise bad_param("this server answers disposition INLINE in format JSON_ARRAY only")
        wait = body.get("wait_timeout", "10s")
        m = re.fullmatch(r"(\d+)s", wait) if isinstance(wait, str) else None
        if not m or not (int(m.group(1)) == 0 or 5 <= int(m.group(1)) <= 50):
            raise bad_param("wait_timeout must be 0s or between 5s and 50s")
        # A stopped warehouse starts for the statement, which waits PENDING meanwhile.
        if w.get("state") in ("STOPPED", "STOPPING", None):
            self.warehouse_start_stop(wid, "start")
        sid = str(uuid.uuid4())
        v = re.search(r"system\.information_schema\.(\w+)", statement, re.IGNORECASE)
        view = v.group(1).lower() if v else None
        params = body.get("parameters", [])
        if not isinstance(params, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in params):
            raise bad_param("parameters must be a list of {name, value, type}")
        values = {p["name"]: p.get("value") for p in params}
        for marker in re.findall(r":(\w+)", statement):
            if marker not in values:
                raise bad_param(f"[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {marker}.")
        c = re.search(r"(table_catalog|catalog_name)\s*=\s*:(\w+)", statement, re.IGNORECASE)
        catalog = values.get(c.group(2)) if c else None
        self.statements[sid] = {"warehouse": wid, "view": view, "running_since": None, "catalog": catalog,
                                "direct_only": bool(re.search(r"inherited_from\s*=\s*'NONE'", statement, re.IGNORECASE))}
        # wait_timeout > 0 would hold the call until the statement ends or the time is up; this server answers at
        # once with the state then, as a statement still running when wait_timeout passes (on_wait_timeout CONTINUE).
        return self.statement_get(sid)

    def statement(self, sid: str) -> dict:
        st = self.statements.get(sid)
        if st is None:
            raise not_found(f"Statement {sid} does not exist.")
        return st

    def statement_get(self, sid: str) -> dict:
        st = self.statement(sid)
        now = time.monotonic()
        if self.warehouses.get(st["warehouse"], {}).get("state") != "RUNNING":
            return {"statement_id": sid, "status": {"state": "PENDING"}}
        if st["running_since"] is None:
            st["running_since"] = now
        if now - st["running_since"] < self.statement_seconds:
            return {"statement_id": sid, "status": {"state": "RUNNING"}}
        if st["view"] not in self.INFORMATION_SCHEMA:
            return {"statement_id": sid, "status": {"state": "FAILED", "sql_state": "42P01", "error": {
                "error_code": "BAD_REQUEST",
                "message": f"[TABLE_OR_VIEW_NOT_FOUND] The table or view system.information_schema.{st['view']} cannot be found."}}}
        columns = self.INFORMATION_SCHEMA[st["view"]]
        if "rows" not in st:
            st["rows"] = self.view_rows(st["view"], st["direct_only"], st["catalog"])
            st["bytes"] = len(json.dumps(st["rows"]))
        if st["bytes"] > 25 * 1024 * 1024:
            return {"statement_id": sid, "status": {"state": "FAILED", "error": {
                "error_code": "BAD_REQUEST", "message": "The INLINE result exceeds 25 MiB: use EXTERNAL_LINKS."}}}
        rows, size = st["rows"], self.sql_chunk_rows
        chunks = [{"chunk_index": i, "row_offset": o, "row_count": min(size, len(rows) - o)}
                  for i, o in enumerate(range(0, len(rows), size))] or [{"chunk_index": 0, "row_offset": 0, "row_count": 0}]
        manifest = {"format": "JSON_ARRAY", "schema": {"column_count": len(columns), "columns": [
            {"name": c, "position": i, "type_name": "TIMESTAMP" if c in ("created", "last_altered") else "STRING",
             "type_text": "TIMESTAMP" if c in ("created", "last_altered") else "STRING"} for i, c in enumerate(columns)]},
            "total_chunk_count": len(chunks), "chunks": chunks, "total_row_count": len(rows), "truncated": False}
        return {"statement_id": sid, "status": {"state": "SUCCEEDED"}, "manifest": manifest,
                "result": self.chunk_of(sid, st, 0)}

    def chunk_of(self, sid: str, st: dict, index: int) -> dict:
        rows, size = st["rows"], self.sql_chunk_rows
        total = max(1, -(-len(rows) // size))
        if index < 0 or index >= total:
            raise bad_param(f"chunk_index {index} is out of range (0..{total - 1})")
        part = rows[index * size:(index + 1) * size]
        out = {"chunk_index": index, "row_offset": index * size, "row_count": len(part), "data_array": part}
        if index + 1 < total:
            out["next_chunk_index"] = index + 1
            out["next_chunk_internal_link"] = f"/api/2.0/sql/statements/{sid}/result/chunks/{index + 1}"
        return out

    def statement_chunk(self, sid: str, index: str) -> dict:
        st = self.statement(sid)
        if "rows" not in st:
            raise ApiError(400, "BAD_REQUEST", f"Statement {sid} has no result yet.")
        if not index.isdigit():
            raise bad_param(f"chunk_index {index} is not a number")
        return self.chunk_of(sid, st, int(index))

    def metastore_summary(self, q: dict) -> dict:
        if not self.state["metastore"]:
            raise not_found("No metastore assigned for the current workspace.", "METASTORE_DOES_NOT_EXIST")
        return self.state["metastore"]

    def uc_page(self, items: list, q: dict, key: str) -> dict:
        size = page_size(q, "max_results", UC_DEFAULT, UC_MAX)
        page, following, _ = paged(items, decode_token(q.get("page_token")), size)
        return with_tokens({key: page}, following)

    def catalogs_list(self, q: dict) -> dict:
        return self.uc_page(self.state["catalogs"], q, "catalogs")

    def schemas_list(self, q: dict) -> dict:
        catalog = require(q, "catalog_name")
        if catalog not in self.catalogs:
            raise not_found(f"Catalog '{catalog}' does not exist.", "CATALOG_DOES_NOT_EXIST")
        return self.uc_page(self.schemas.get(catalog, []), q, "schemas")

    def in_schema(self, q: dict, index: dict, key: str) -> dict:
        catalog, schema = require(q, "catalog_name"), require(q, "schema_name")
        if catalog not in self.catalogs:
            raise not_found(f"Catalog '{catalog}' does not exist.", "CATALOG_DOES_NOT_EXIST")
        if f"{catalog}.{schema}" not in self.schema_names:
            raise not_found(f"Schema '{catalog}.{schema}' does not exist.", "SCHEMA_DOES_NOT_EXIST")
        return self.uc_page(index.get((catalog, schema), []), q, key)

    def tables_list(self, q: dict) -> dict:
        # omit_columns=true leaves each table's columns out of the answer
        # (https://docs.databricks.com/api/workspace/tables/list; databricks-sdk-go service/catalog ListTablesRequest).
        answer = self.in_schema(q, self.tables, "tables")
        if q.get("omit_columns", "").lower() == "true":
            answer["tables"] = [{k: v for k, v in t.items() if k != "columns"} for t in answer.get("tables", [])]
        return answer

    def volumes_list(self, q: dict) -> dict:
        return self.in_schema(q, self.volumes, "volumes")

    def external_locations_list(self, q: dict) -> dict:
        return self.uc_page(self.state["external_locations"], q, "external_locations")

    def storage_credentials_list(self, q: dict) -> dict:
        return self.uc_page(self.state["storage_credentials"], q, "storage_credentials")

    def models_list(self, q: dict) -> dict:
        models = self.state["registered_models"]
        if q.get("catalog_name"):
            models = [m for m in models if m.get("catalog_name") == q["catalog_name"]]
        if q.get("schema_name"):
            models = [m for m in models if m.get("schema_name") == q["schema_name"]]
        return self.uc_page(models, q, "registered_models")

    def uc_permissions(self, securable_type: str, full_name: str) -> dict:
        kind = securable_type.lower()
        key = f"{kind}/{full_name}"
        exists = {
            "catalog": lambda: full_name in self.catalogs,
            "schema": lambda: full_name in self.schema_names,
            "table": lambda: full_name in self.table_names,
            "volume": lambda: full_name in self.volume_names,
            "external_location": lambda: any(o["name"] == full_name for o in self.state["external_locations"]),
            "storage_credential": lambda: any(o["name"] == full_name for o in self.state["storage_credentials"]),
            "metastore": lambda: self.state["metastore"].get("metastore_id") == full_name,
            "function": lambda: full_name in self.model_names,
            "registered_model": lambda: full_name in self.model_names,
        }.get(kind)
        if exists is None:
            raise bad_param(f"Unsupported securable type: {securable_type}")
        if key not in self.state["grants"] and not exists():
            code = {"catalog": "CATALOG_DOES_NOT_EXIST", "schema": "SCHEMA_DOES_NOT_EXIST",
                    "table": "TABLE_DOES_NOT_EXIST"}.get(kind, "RESOURCE_DOES_NOT_EXIST")
            raise not_found(f"{kind.replace('_', ' ').capitalize()} '{full_name}' does not exist.", code)
        return {"privilege_assignments": self.state["grants"].get(key, [])}

    def serving_endpoints_list(self, q: dict) -> dict:
        return {"endpoints": self.state["serving_endpoints"]}

    def vector(self) -> dict:
        v = self.state["vector_search"]
        if not v.get("enabled", True):
            raise not_found("Vector search is not enabled for this workspace.", "FEATURE_DISABLED")
        return v

    def vector_endpoints_list(self, q: dict) -> dict:
        page, following, _ = paged(self.vector().get("endpoints", []), decode_token(q.get("page_token")), VECTOR_PAGE)
        return with_tokens({"endpoints": page}, following)

    def vector_indexes_list(self, q: dict) -> dict:
        v = self.vector()
        endpoint = require(q, "endpoint_name")
        if not any(e.get("name") == endpoint for e in v.get("endpoints", [])):
            raise not_found(f"Vector search endpoint {endpoint} not found.")
        indexes = [i for i in v.get("indexes", []) if i.get("endpoint_name") == endpoint]
        page, following, _ = paged(indexes, decode_token(q.get("page_token")), VECTOR_PAGE)
        return with_tokens({"vector_indexes": page}, following)

    def repos_list(self, q: dict) -> dict:
        # The deprecated List Repos API lists only the Git folders under /Repos (/Workspace/Repos), not those in
        # users' homes or /Shared: the Workspace API finds those
        # (https://docs.databricks.com/gcp/en/repos/migrate-list-repos, https://docs.databricks.com/api/workspace/repos/list).
        repos = [r for r in self.state["repos"] if str(r.get("path", "")).startswith(("/Repos/", "/Workspace/Repos/"))]
        prefix = q.get("path_prefix")
        if prefix:
            repos = [r for r in repos if str(r.get("path", "")).startswith(prefix)]
        page, following, _ = paged(repos, decode_token(q.get("next_page_token")), REPOS_PAGE)
        return with_tokens({"repos": page}, following)

    def repo(self, rid: str) -> dict:
        """GET /api/2.0/repos/{repo_id}: one Git folder's Git metadata, wherever it lives
        (https://docs.databricks.com/api/workspace/repos/get)."""
        repo = self.repos.get(rid)
        if repo is None:
            raise not_found(f"Repo {rid} does not exist.")
        return repo

    def workspace_list(self, q: dict) -> dict:
        path = require(q, "path")
        path = path.rstrip("/") or "/"
        if path != "/" and path not in self.objects:
            raise not_found(f"Path ({path}) doesn't exist.")
        node = self.objects.get(path)
        if node is not None and node.get("object_type") not in ("DIRECTORY", "REPO"):
            return {"objects": [node]}
        children = self.children.get(path, [])
        return {"objects": children} if children else {}

    def scopes_list(self, q: dict) -> dict:
        return {"scopes": [{k: v for k, v in s.items() if k != "acls"} for s in self.state["secret_scopes"]]}

    def acls_list(self, q: dict) -> dict:
        name = require(q, "scope")
        scope = self.scopes.get(name)
        if scope is None:
            raise not_found(f"Scope {name} does not exist!")
        return {"items": scope.get("acls", [])}

    def object_permissions(self, parts: list[str]) -> dict:
        if parts[0] == "sql" and len(parts) == 3 and parts[1] == "warehouses":
            parts = ["warehouses", parts[2]]
        if len(parts) != 2 or parts[0] not in PERMISSION_TYPES:
            raise bad_param(f"Unsupported object type: {'/'.join(parts[:-1])}")
        kind, oid = parts
        exists = {"jobs": lambda: oid.isdigit() and int(oid) in self.jobs, "clusters": lambda: oid in self.clusters,
                  "warehouses": lambda: oid in self.warehouses,
                  "cluster-policies": lambda: any(p.get("policy_id") == oid for p in self.state["cluster_policies"]),
                  "instance-pools": lambda: any(p.get("instance_pool_id") == oid for p in self.state["instance_pools"]),
                  }[kind]()
        # An unknown object is a 404 RESOURCE_DOES_NOT_EXIST, even when the state still holds an ACL under its id
        # (a seeded state that dropped the object but not its ACL).
        if not exists:
            raise not_found(f"{PERMISSION_TYPES[kind][0].capitalize()} {oid} does not exist.")
        stored = self.state["permissions"].get(f"{kind}/{oid}")
        if stored is not None:
            return stored
        return self.default_acl(kind, oid)


GETS = {
    "2.2/jobs/list": Workspace.jobs_list, "2.1/jobs/list": Workspace.jobs_list,
    "2.2/jobs/get": Workspace.jobs_get, "2.1/jobs/get": Workspace.jobs_get,
    "2.1/clusters/list": Workspace.clusters_list, "2.0/clusters/list": Workspace.clusters_list,
    "2.0/policies/clusters/list": Workspace.policies_list,
    "2.0/instance-pools/list": Workspace.pools_list,
    "2.0/sql/warehouses": Workspace.warehouses_list,
    "2.1/unity-catalog/metastore_summary": Workspace.metastore_summary,
    "2.1/unity-catalog/catalogs": Workspace.catalogs_list,
    "2.1/unity-catalog/schemas": Workspace.schemas_list,
    "2.1/unity-catalog/tables": Workspace.tables_list,
    "2.1/unity-catalog/volumes": Workspace.volumes_list,
    "2.1/unity-catalog/external-locations": Workspace.external_locations_list,
    "2.1/unity-catalog/storage-credentials": Workspace.storage_credentials_list,
    "2.1/unity-catalog/models": Workspace.models_list,
    "2.0/serving-endpoints": Workspace.serving_endpoints_list,
    "2.0/vector-search/endpoints": Workspace.vector_endpoints_list,
    "2.0/vector-search/indexes": Workspace.vector_indexes_list,
    "2.0/repos": Workspace.repos_list,
    "2.0/workspace/list": Workspace.workspace_list,
    "2.0/secrets/scopes/list": Workspace.scopes_list,
    "2.0/secrets/acls/list": Workspace.acls_list,
    "2.0/preview/scim/v2/Me": Workspace.me,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "databricks-local"
    workspace: Workspace  # set on the per-workspace subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def read_body(self) -> bytes:
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
        late = getattr(self, "late_seconds", 0.0)
        if late:
            self.late_seconds = 0.0
            time.sleep(late)
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "Server: databricks-local"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload) if self.command != 'HEAD' else 0}")
        for key, value in headers or []:
            lines.append(f"{key}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (payload if self.command != "HEAD" else b""))

    def dispatch(self) -> None:
        arrived = time.monotonic()
        ws = self.workspace
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.reply(400, {"error_code": "MALFORMED_REQUEST", "message": "Unreadable request body."})
            return
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/__admin/"):
            self.admin(path[len("/__admin/"):], raw)
            return
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        method = self.command
        header = self.headers.get("Authorization", "")
        record: dict = {"method": method, "path": path, "query": query, "auth": "none", "status": None, "at": arrived,
                        "body": None}
        if method in ("POST", "PATCH", "PUT") and path.startswith("/api/") and raw:
            try:
                record["body"] = json.loads(raw)
            except ValueError:
                record["body"] = raw.decode("utf-8", "replace")
        with ws.lock:
            if path.startswith("/api/"):
                record["auth"] = ws.authenticate(header, arrived)[0]
            elif header:
                record["auth"] = "basic" if header.lower().startswith("basic ") else "bad"
            ws.requests.append(record)
            rule = ws.match_fault(method, path) if path.startswith(("/api/", "/oidc/")) else None
            generation = ws.hang_generation
        if rule is not None:
            if rule.get("mode") == "hang":
                with ws.lock:
                    while ws.hang_generation == generation:
                        ws.released.wait()
            if rule.get("mode") == "late":
                # The call applies, and its answer comes after delay_ms: the world's "a call can apply and still
                # time out" (a client whose timeout is shorter never learns it took effect).
                self.late_seconds = float(rule.get("delay_ms") or 0) / 1000.0
            elif rule.get("delay_ms"):
                time.sleep(float(rule["delay_ms"]) / 1000.0)
            if rule.get("location"):
                # A redirect, as a workspace behind PrivateLink answers a caller outside its network: 30x to the
                # login page with error=private-link-validation-error (databricks-sdk-go apierr/private_link.go,
                # databricks-sdk-py errors/private_link.py).
                status = int(rule.get("status") or 302)
                with ws.lock:
                    record["status"] = status
                payload = b"<html><body>Redirecting</body></html>"
                self.wfile.write((f"HTTP/1.1 {status} {REASONS.get(status, 'Found')}\r\nServer: databricks-local\r\n"
                                  f"Location: {rule['location']}\r\nContent-Type: text/html\r\n"
                                  f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
                return
            if rule.get("status"):
                status = int(rule["status"])
                headers = [("Retry-After", str(rule["retry_after"]))] if rule.get("retry_after") is not None else []
                body = {"error_code": rule.get("error_code") or FAULT_CODES.get(status, "UNKNOWN"),
                        "message": rule.get("message") or f"Injected fault: HTTP {status}."}
                self.finish_api(record, status, body, headers)
                return
        if ws.latency and path.startswith(("/api/", "/oidc/")):
            time.sleep(ws.latency)
        try:
            if path == "/oidc/v1/token":
                if method != "POST":
                    raise ApiError(405, "INVALID_STATE", "Use POST.")
                form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
                if form.get("client_id") and record["auth"] == "none":
                    record["auth"] = "form"
                with ws.lock:
                    status, body = ws.issue_token(form, header, time.monotonic())
                self.finish_api(record, status, body, [("Cache-Control", "no-store")])
                return
            if not path.startswith("/api/"):
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
            body = None
            if method in ("POST", "PATCH", "PUT"):
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    raise ApiError(400, "MALFORMED_REQUEST", "Could not parse the request body as JSON.") from None
            with ws.lock:
                now = time.monotonic()
                kind, error = ws.authenticate(header, now)
                record["auth"] = kind
                if error is not None:
                    raise error
                token = header.partition(" ")[2].strip()
                ws.caller = ws.token_clients.get(token, token)
                ws.tick(now)
                answer = ws.api(method, path, query, body)
                payload = json.dumps(answer, separators=(",", ":")).encode()
            self.finish_raw(record, 200, payload)
        except ApiError as e:
            self.finish_api(record, e.status, e.body(), e.headers)
        except Exception as e:  # a bug here: answer 500 rather than drop the connection
            self.finish_api(record, 500, {"error_code": "INTERNAL_ERROR", "message": f"{type(e).__name__}: {e}"}, [])

    def finish_api(self, record: dict, status: int, body: Any, headers: list[tuple[str, str]]) -> None:
        with self.workspace.lock:
            record["status"] = status
        self.reply(status, body, headers)

    def finish_raw(self, record: dict, status: int, payload: bytes) -> None:
        with self.workspace.lock:
            record["status"] = status
        late = getattr(self, "late_seconds", 0.0)
        if late:
            self.late_seconds = 0.0
            time.sleep(late)
        close = "Connection: close\r\n" if self.close_connection else ""
        self.wfile.write((f"HTTP/1.1 {status} OK\r\nServer: databricks-local\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(payload)}\r\n{close}\r\n").encode() + payload)

    def admin(self, what: str, raw: bytes) -> None:
        ws = self.workspace
        method = self.command
        try:
            doc = json.loads(raw) if raw else None
        except ValueError as e:
            self.reply(400, {"error": f"not JSON: {e}"})
            return
        try:
            with ws.lock:
                if what == "state" and method == "GET":
                    ws.tick(time.monotonic())
                    # "principals" and "site" are optional: left out when not seeded, so the state reads back as set.
                    self.reply(200, {k: v for k, v in ws.state.items() if k not in ("principals", "site") or v})
                elif what == "state" and method == "POST":
                    ws.set_state(validate(copy.deepcopy(doc)))
                    self.reply(200, {})
                elif what == "credentials" and method == "POST":
                    if not isinstance(doc, dict):
                        raise BadDocument("credentials must be an object")
                    pats, clients = doc.get("pats", []), doc.get("oauth_clients", {})
                    ttl = doc.get("token_ttl_seconds", 3600)
                    if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
                        raise BadDocument("pats must be a list of strings")
                    if not isinstance(clients, dict) or not all(isinstance(v, str) for v in clients.values()):
                        raise BadDocument("oauth_clients must map client ids to secrets")
                    if not isinstance(ttl, (int, float)) or ttl <= 0:
                        raise BadDocument("token_ttl_seconds must be a positive number")
                    unknown = set(doc) - {"pats", "oauth_clients", "token_ttl_seconds"}
                    if unknown:
                        raise BadDocument(f"unknown keys: {', '.join(sorted(unknown))}")
                    ws.pats, ws.oauth_clients, ws.token_ttl = set(pats), dict(clients), float(ttl)
                    self.reply(200, {})
                elif what == "expire_tokens" and method == "POST":
                    revoke = (doc or {}).get("pats", []) if isinstance(doc, dict) or doc is None else None
                    if not isinstance(revoke, list):
                        raise BadDocument('expects {"pats": [...]} or nothing')
                    now = time.monotonic()
                    ws.tokens = {t: min(e, now - 1) for t, e in ws.tokens.items()}
                    ws.pats -= set(revoke)
                    self.reply(200, {})
                elif what == "faults" and method == "POST":
                    rules = doc.get("rules") if isinstance(doc, dict) else doc
                    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
                        raise BadDocument("faults must be a list of rules")
                    checked = []
                    for i, r in enumerate(rules):
                        unknown = set(r) - {"path_prefix", "method", "status", "retry_after", "times", "delay_ms",
                                            "mode", "error_code", "message", "location"}
                        if unknown:
                            raise BadDocument(f"rule {i}: unknown keys {', '.join(sorted(unknown))}")
                        if r.get("mode") not in (None, "hang", "late"):
                            raise BadDocument(f"rule {i}: mode must be \"hang\" or \"late\" (applied, answered after delay_ms)")
                        if not (r.get("status") or r.get("delay_ms") or r.get("mode") or r.get("location")):
                            raise BadDocument(f"rule {i}: needs status, delay_ms, mode or location")
                        if r.get("times") is not None and (not isinstance(r["times"], int) or r["times"] < 0):
                            raise BadDocument(f"rule {i}: times must be a non-negative integer")
                        checked.append(dict(r, _left=r.get("times")))
                    ws.faults = checked
                    ws.hang_generation += 1
                    ws.released.notify_all()
                    self.reply(200, {})
                elif what == "faults" and method == "GET":
                    self.reply(200, [{k: v for k, v in r.items() if k != "_left"} | {"times_left": r["_left"]}
                                     for r in ws.faults])
                elif what == "faults" and method == "DELETE":
                    ws.faults = []
                    ws.hang_generation += 1
                    ws.released.notify_all()
                    self.reply(200, {})
                elif what == "requests" and method == "GET":
                    self.reply(200, ws.requests)
                elif what == "requests" and method == "DELETE":
                    ws.requests = []
                    self.reply(200, {})
                elif what == "settings" and method == "POST":
                    allowed = {"warehouse_delay_seconds", "latency_ms", "statement_seconds", "sql_chunk_rows"}
                    if not isinstance(doc, dict) or not doc or set(doc) - allowed:
                        raise BadDocument(f"settings are any of {sorted(allowed)}")
                    seconds, chunk = doc.get("statement_seconds", ws.statement_seconds), doc.get("sql_chunk_rows", ws.sql_chunk_rows)
                    if not isinstance(seconds, (int, float)) or seconds < 0:
                        raise BadDocument("statement_seconds must be a non-negative number")
                    if not isinstance(chunk, int) or chunk < 1:
                        raise BadDocument("sql_chunk_rows must be a positive integer")
                    ws.statement_seconds, ws.sql_chunk_rows = float(seconds), chunk
                    delay, latency = doc.get("warehouse_delay_seconds", ws.warehouse_delay), doc.get("latency_ms")
                    if not isinstance(delay, (int, float)) or delay < 0:
                        raise BadDocument("warehouse_delay_seconds must be a non-negative number")
                    if latency is not None and (not isinstance(latency, (int, float)) or latency < 0):
                        raise BadDocument("latency_ms must be a non-negative number")
                    ws.warehouse_delay = float(delay)
                    if latency is not None:
                        ws.latency = float(latency) / 1000.0
                    self.reply(200, {})
                else:
                    self.reply(404, {"error": f"no admin endpoint {method} /__admin/{what}"})
        except BadDocument as e:
            self.reply(400, {"error": str(e)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workspaces", default="primary,secondary", help="comma-separated names")
    parser.add_argument("--warehouse-delay", type=float, default=0.2, help="seconds STARTING lasts (and STOPPING)")
    parser.add_argument("--default-credentials", action="store_true",
                        help='PAT "dapi-local-NAME", OAuth client "local-client-NAME" / "local-secret-NAME"')
    parser.add_argument("--port", type=int, default=0, help="first port (0: free ports)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the least time every API answer takes")
    args = parser.parse_args()
    names = [n.strip() for n in args.workspaces.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        parser.error("--workspaces needs distinct names")
    urls = {}
    for i, name in enumerate(names):
        ws = Workspace(name, args.warehouse_delay, args.latency_ms / 1000.0)
        if args.default_credentials:
            ws.pats = {f"dapi-local-{name}"}
            ws.oauth_clients = {f"local-client-{name}": f"local-secret-{name}"}
        handler = type(f"Handler_{i}", (Handler,), {"workspace": ws})
        server = Server(("127.0.0.1", args.port + i if args.port else 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"serve-{name}").start()
        urls[name] = f"http://127.0.0.1:{server.server_address[1]}"
    print(json.dumps(urls), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
