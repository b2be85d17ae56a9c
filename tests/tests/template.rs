//! template.yaml against the workspace: fails when the stack and the code disagree.
//!
//! - every folder under `functions/` has an `AWS::Serverless::Function` built from its binary, and vice versa;
//! - every `DR_*` variable the code reads is set on every function (test-only knobs are not), and the template
//!   sets no `DR_*` variable the code does not read (a typo would otherwise be silently ignored);
//! - the IAM statements cover every SDK call in the adapters (operation -> IAM action), for every
//!   function, on the resources it touches, and every control bucket prefix the engine builds keys under;
//!   writes of parameters stay on `{prefix}/active` and the drill copies; no role statement has
//!   `Resource: "*"` unless its actions have no resource-level permission (commented);
//! - who watches the watcher: each function has errors and throttles alarms, each dead-letter queue a depth
//!   alarm, all paging; the dashboard shows every metric the code emits.
//!
//! Every source path it reads is in [`SOURCES`].
//!
//! The SDK operations are recognised by name: the operation modules of the `aws-sdk-*` crates the workspace
//! resolves (`cargo metadata`), so a new call is caught even before anyone maps it to an IAM action.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every workspace source path this test reads, in one place: when crates move, this is the only change.
struct Sources {
    /// Folder of the SDK adapters (every SDK call is found here, recursively).
    adapters: &'static str,
    /// Folder of the operator's calls inside it (the aws crate's `operator` feature, `dr` only: no function compiles
    /// them, tests/tests/layering.rs), left out of what the functions' roles must grant.
    operator: &'static str,
    /// Files that read the `DR_*` environment variables.
    configuration: &'static [&'static str],
    /// File that declares the EMF metrics (`Metric { name, unit, dimension }` literals and `NAMESPACE`).
    metrics: &'static str,
    /// Folders whose string literals build the control bucket's keys (recursively; test modules left out).
    key_builders: &'static [&'static str],
}

const SOURCES: Sources = Sources {
    adapters: "shared/aws/src",
    operator: "shared/aws/src/operator",
    configuration: &["shared/app/src/config.rs", "shared/aws/src/lib.rs"],
    metrics: "shared/app/src/metrics.rs",
    key_builders: &[
        "shared/domain/src",
        "shared/ports/src",
        "shared/delta/src",
        "shared/replication/src",
        "shared/workspace/src",
        "shared/failover/src",
        "shared/engine/src",
    ],
};

// ----------------------------------------------------------------------------------------------------------
// The rules a reviewer reads: which action each SDK operation needs, and every deliberate exception.
// ----------------------------------------------------------------------------------------------------------

/// IAM actions per SDK operation, as `(service, operation, actions)`. An operation the code calls that is
/// missing here fails the test: add it with the action(s) from the Service Authorization Reference.
const OPERATION_ACTIONS: &[(&str, &str, &[&str])] = &[
    ("ssm", "get_parameter", &["ssm:GetParameter"]),
    ("route53", "list_resource_record_sets", &["route53:ListResourceRecordSets"]),
    ("route53", "change_resource_record_sets", &["route53:ChangeResourceRecordSets"]),
    ("route53", "get_change", &["route53:GetChange"]),
    ("ssm", "get_parameters", &["ssm:GetParameters"]),
    ("ssm", "get_parameters_by_path", &["ssm:GetParametersByPath"]),
    ("ssm", "get_parameter_history", &["ssm:GetParameterHistory"]),
    ("ssm", "put_parameter", &["ssm:PutParameter"]),
    ("ssm", "label_parameter_version", &["ssm:LabelParameterVersion"]),
    ("ssm", "unlabel_parameter_version", &["ssm:UnlabelParameterVersion"]),
    ("ssm", "delete_parameter", &["ssm:DeleteParameter"]),
    ("ssm", "delete_parameters", &["ssm:DeleteParameters"]),
    ("ssm", "describe_parameters", &["ssm:DescribeParameters"]),
    ("s3", "get_object", &["s3:GetObject"]),
    ("s3", "head_object", &["s3:GetObject"]),
    ("s3", "put_object", &["s3:PutObject"]),
    ("s3", "copy_object", &["s3:GetObject", "s3:PutObject"]),
    ("s3", "delete_object", &["s3:DeleteObject"]),
    ("s3", "delete_objects", &["s3:DeleteObject"]),
    ("s3", "list_objects_v2", &["s3:ListBucket"]),
    ("s3", "list_objects", &["s3:ListBucket"]),
    ("s3", "head_bucket", &["s3:ListBucket"]),
    ("s3", "list_object_versions", &["s3:ListBucketVersions"]),
    ("s3", "get_object_tagging", &["s3:GetObjectTagging"]),
    ("s3", "get_bucket_versioning", &["s3:GetBucketVersioning"]),
    ("s3", "get_bucket_replication", &["s3:GetReplicationConfiguration"]),
    ("s3", "get_bucket_notification_configuration", &["s3:GetBucketNotification"]),
    ("s3", "get_bucket_location", &["s3:GetBucketLocation"]),
    ("sns", "publish", &["sns:Publish"]),
    ("sns", "publish_batch", &["sns:Publish"]),
    ("sns", "get_topic_attributes", &["sns:GetTopicAttributes"]),
    ("sns", "list_subscriptions_by_topic", &["sns:ListSubscriptionsByTopic"]),
    ("sqs", "send_message", &["sqs:SendMessage"]),
    ("sqs", "send_message_batch", &["sqs:SendMessage"]),
    ("sqs", "receive_message", &["sqs:ReceiveMessage"]),
    ("sqs", "delete_message", &["sqs:DeleteMessage"]),
    ("sqs", "delete_message_batch", &["sqs:DeleteMessage"]),
    ("sqs", "get_queue_attributes", &["sqs:GetQueueAttributes"]),
    ("sts", "get_caller_identity", &[]),
    ("lambda", "invoke", &["lambda:InvokeFunction"]),
];

/// Actions a function deliberately does NOT get although the shared code can call them. The role must not
/// grant them either (least privilege, checked both ways).
const NOT_GRANTED: &[(&str, &str, &str)] = &[
    ("replication-failure", "ssm:PutParameter", "never promotes: it writes incidents and manifests to the bucket"),
    ("replication-failure", "ssm:LabelParameterVersion", "never promotes, so never labels a version of active"),
    ("replication-failure", "ssm:UnlabelParameterVersion", "never promotes, so never makes room for a version of active"),
    ("replication-failure", "ssm:DeleteParameters", "drill copies are deleted by drills, which run in manual-trigger"),
    ("health-alarm", "ssm:DeleteParameters", "drill copies are deleted by drills, which run in manual-trigger"),
    ("replication-failure", "route53:ListResourceRecordSets", "never promotes, so never redirects clients"),
    ("replication-failure", "route53:ChangeResourceRecordSets", "never promotes, so never redirects clients"),
    ("replication-failure", "route53:GetChange", "never promotes, so never redirects clients"),
    ("replication-failure", "sqs:SendMessage", "never exports the workspaces: only manual-trigger posts export continuations"),
    ("replication-failure", "s3:GetBucketVersioning", "never snapshots or checks: the Delta assessment runs elsewhere"),
    ("replication-failure", "s3:GetReplicationConfiguration", "never snapshots or checks: the Delta assessment runs elsewhere"),
    ("replication-failure", "s3:GetBucketNotification", "never snapshots or checks: the Delta assessment runs elsewhere"),
];

/// Actions a function's role holds that no SDK call in the code explains, each with its reason: the Lambda service
/// or an AWS integration acts with the function's role. `"*"` = every function. Together with the code's calls
/// (minus NOT_GRANTED) these are exactly what each role may grant: an extra action fails the test as surely as a
/// missing one.
const INFRASTRUCTURE_GRANTS: &[(&str, &str, &str)] = &[
    ("*", "logs:CreateLogStream", "Lambda writes the function's logs to its own log group with the function's role"),
    ("*", "logs:PutLogEvents", "Lambda writes the function's logs to its own log group with the function's role"),
    ("*", "xray:PutTraceSegments", "Tracing: Active: Lambda sends the function's trace segments with its role"),
    ("*", "xray:PutTelemetryRecords", "Tracing: Active: Lambda sends the function's trace telemetry with its role"),
    ("*", "kms:GenerateDataKey", "the topics (Publish) and queues (SendMessage) are encrypted with the stack key"),
    ("*", "kms:Decrypt", "the topics and queues are encrypted with the stack key (SQS and SNS call Decrypt too)"),
    ("replication-failure", "sqs:ReceiveMessage", "the SQS event source mapping polls with the function's role"),
    ("replication-failure", "sqs:DeleteMessage", "the SQS event source mapping deletes what the batch handled"),
    ("replication-failure", "sqs:ChangeMessageVisibility", "the event source mapping returns failed records"),
    ("replication-failure", "sqs:GetQueueAttributes", "the event source mapping reads the queue's attributes"),
    ("manual-trigger", "sqs:ReceiveMessage", "the ExportQueue event source mapping polls with the function's role"),
    ("manual-trigger", "sqs:DeleteMessage", "the ExportQueue event source mapping deletes what the invocation handled"),
    ("manual-trigger", "sqs:ChangeMessageVisibility", "the ExportQueue event source mapping returns failed records"),
    ("manual-trigger", "sqs:GetQueueAttributes", "the ExportQueue event source mapping reads the queue's attributes"),
    // sqs:SendMessage is not here: the code calls it (aws::sqs posts export continuations); the async on-failure
    // destinations (ScheduleFailureQueue, HealthAlarmFailureQueue) are sent to by Lambda with the same action.
];

/// Roles that no function runs with: the AWS service that assumes each, and exactly the actions it may grant.
const SERVICE_ROLES: &[(&str, &str, &[&str])] = &[
    (
        "SchedulerRole",
        "scheduler.amazonaws.com",
        &["lambda:InvokeFunction", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"],
    ),
    // Assumed by the primary region's rule <stack>-forward-alarms (created by operators, docs/deploy.md) to put
    // the failover alarms' state changes on this region's default bus.
    ("AlarmForwardingRole", "events.amazonaws.com", &["events:PutEvents"]),
];

/// Resources each required action must be granted on, by the logical names or parameters its statement names
/// (the code's SSM calls stay under the prefix; its S3 calls are on the control bucket; it publishes to both
/// topics). Data buckets and other resources may be granted beside these.
/// The first entry whose prefix matches an action applies: the bucket-configuration reads of replication
/// coverage (dr_delta) are on the data buckets only.
const ACTION_RESOURCES: &[(&str, &[&str])] = &[
    ("ssm:", &["SsmPrefix"]),
    ("s3:GetBucketVersioning", &["DataBucketArns"]),
    ("s3:GetReplicationConfiguration", &["DataBucketArns"]),
    ("s3:GetBucketNotification", &["DataBucketArns"]),
    ("s3:", &["ControlBucket"]),
    ("sns:", &["PagingTopic", "ChatTopic"]),
    ("route53:ListResourceRecordSets", &["RedirectionHostedZoneId"]),
    ("route53:ChangeResourceRecordSets", &["RedirectionHostedZoneId"]),
    ("route53:GetChange", &["change/*"]),
];

/// Where else an action may be granted: the Delta assessment (dr_delta) lists and reads the data-plane
/// locations, scoped by the parameters DataPlanePrefixes and DataPlaneObjectArns.
const ALSO_ON: &[(&str, &[&str])] = &[("s3:GetObject", &["DataPlaneObjectArns"]), ("s3:ListBucket", &["DataBucketArns"])];

/// Actions without resource-level permissions: the only ones a role statement may grant on `"*"` (each such
/// statement carries a comment in the template).
const NO_RESOURCE_LEVEL: &[&str] =
    &["ssm:DescribeParameters", "cloudwatch:PutMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"];

/// The only parameters the handlers write, relative to the prefix (CONTRACT.md).
const WRITABLE_PARAMETERS: &[&str] = &["/active", "/drills/*"];

/// Path-like string literals of the engine that are not control bucket keys.
const NOT_CONTROL_BUCKET_KEYS: &[(&str, &str)] = &[("drills", "SSM: drill copies are parameters under {prefix}/drills/")];

/// `DR_*` variables the code reads that production must NOT set (the fault tests shorten timeouts with them).
const TEST_ONLY_VARIABLES: &[&str] = &["DR_AWS_ATTEMPT_TIMEOUT_MS", "DR_AWS_INITIAL_BACKOFF_MS"];

/// Optional `DR_*` variables deliberately left unset on a function, with the reason. Otherwise the template sets
/// every optional variable explicitly (their defaults are documented in docs/deploy.md), so that a change of a
/// default in the code does not silently change production.
const DELIBERATELY_UNSET: &[(&str, &str, &str)] = &[
    ("health-alarm", "DR_EXPORT_QUEUE_URL", "only manual-trigger runs snapshots, whose exports it carries"),
    ("health-alarm", "DR_EXPORT_PART_SIZE", "only manual-trigger runs snapshots, whose exports it carries"),
    ("replication-failure", "DR_EXPORT_QUEUE_URL", "only manual-trigger runs snapshots, whose exports it carries"),
    ("replication-failure", "DR_EXPORT_PART_SIZE", "only manual-trigger runs snapshots, whose exports it carries"),
];

// ----------------------------------------------------------------------------------------------------------
// Loading: the template (short-form tags to long form), the workspace, the SDK operation names.
// ----------------------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// YAML to JSON; `!Ref x` becomes `{"Ref": x}`, `!GetAtt a.b` `{"Fn::GetAtt": ["a", "b"]}`, `!Sub ...`
/// `{"Fn::Sub": ...}` and so on, as CloudFormation reads them.
fn to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .unwrap_or_else(|| n.as_f64().map(Value::from).unwrap_or(Value::Null)),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_norway::to_string(&other).unwrap().trim().to_owned(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string().trim_start_matches('!').to_owned();
            let value = to_json(t.value);
            match (tag.as_str(), value) {
                ("Ref", v) => json!({ "Ref": v }),
                ("Condition", v) => json!({ "Condition": v }),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').unwrap_or_else(|| panic!("!GetAtt {s}: no attribute"));
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (other, v) => json!({ format!("Fn::{other}"): v }),
            }
        }
    }
}

fn template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        let yaml: serde_norway::Value = serde_norway::from_str(&read("template.yaml")).expect("template.yaml parses as YAML");
        to_json(yaml)
    })
}

fn resources() -> &'static Map<String, Value> {
    template()["Resources"].as_object().expect("Resources")
}

fn resources_of(kind: &str) -> Vec<(&'static str, &'static Value)> {
    resources().iter().filter(|(_, r)| r["Type"] == kind).map(|(id, r)| (id.as_str(), r)).collect()
}

/// The folders under `functions/` (each a crate whose package and binary have the folder's name).
fn function_folders() -> BTreeSet<String> {
    let dir = root().join("functions");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// `AWS::Serverless::Function` resources by the binary they are built from.
fn template_functions() -> BTreeMap<String, (&'static str, &'static Value)> {
    let mut out = BTreeMap::new();
    for (id, r) in resources_of("AWS::Serverless::Function") {
        assert_eq!(r["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}: Metadata.BuildMethod");
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or_else(|| panic!("{id}: no Binary"));
        assert!(out.insert(binary.to_owned(), (id, r)).is_none(), "two functions build the binary {binary}");
    }
    out
}

/// A function's properties with the template's `Globals.Function` merged in, as SAM does (maps merge, the
/// resource's own values win).
fn effective_properties(function: &Value) -> Value {
    fn merge(base: &Value, over: &Value) -> Value {
        match (base, over) {
            (Value::Object(b), Value::Object(o)) => {
                let mut out = b.clone();
                for (k, v) in o {
                    let merged = out.get(k).map_or_else(|| v.clone(), |existing| merge(existing, v));
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (_, over) => over.clone(),
        }
    }
    merge(&template()["Globals"]["Function"], &function["Properties"])
}

/// A number given literally or as `!Ref` to a parameter (its default, and its minimum when it has one).
fn number(value: &Value) -> (f64, f64) {
    let parse = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    if let Some(p) = value["Ref"].as_str() {
        let param = &template()["Parameters"][p];
        let default = parse(&param["Default"]).unwrap_or_else(|| panic!("parameter {p} has no numeric default"));
        return (default, parse(&param["MinValue"]).unwrap_or(default));
    }
    let n = parse(value).unwrap_or_else(|| panic!("not a number: {value}"));
    (n, n)
}

/// Every `"DR_..."` string literal in a source file.
fn dr_variables(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in source.match_indices("\"DR_") {
        let rest = &source[at + 1..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        if rest[name.len()..].starts_with('"') {
            out.insert(name);
        }
    }
    out
}

/// The first segments of the control bucket keys the engine and domain build (`"locks/failover.json"`,
/// `format!("reports/{id}.md")`, `"replication/incidents/"`): string literals that start with a lowercase path
/// segment and end in `.json`, `.md`, `.csv` or `/`, or carry a `{}` placeholder. Test modules are left out.
fn control_bucket_prefixes() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            for literal in code.split('"').skip(1).step_by(2) {
                let Some((first, _)) = literal.split_once('/') else { continue };
                let segment_ok = first.starts_with(|c: char| c.is_ascii_lowercase())
                    && first.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
                let key_like = [".json", ".md", ".csv", "/"].iter().any(|end| literal.ends_with(end)) || literal.contains('{');
                if segment_ok && key_like && !literal.contains(char::is_whitespace) {
                    out.entry(first.to_owned()).or_insert_with(|| format!("{}: \"{literal}\"", path.display()));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for folder in SOURCES.key_builders {
        walk(&root().join(folder), &mut out);
    }
    out
}

/// The source files of the AWS adapters (recursively: adapters may grow into folders).
fn adapter_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(SOURCES.adapters), &mut out);
    out.sort();
    out
}

/// The operation names of each `aws-sdk-<service>` crate the workspace resolves: the modules under its
/// `src/operation/`, which are exactly its client's fluent methods.
fn sdk_operations() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let version = Command::new(&cargo).arg("-vV").output().expect("cargo -vV");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("cargo -vV names the host").trim().to_owned();
    let manifest = root().join("Cargo.toml");
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host, "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut services = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let Some(service) = package["name"].as_str().and_then(|n| n.strip_prefix("aws-sdk-")) else { continue };
        let dir = Path::new(package["manifest_path"].as_str().unwrap()).parent().unwrap().join("src/operation");
        let ops: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        services.entry(service.to_owned()).or_insert_with(BTreeSet::new).extend(ops);
    }
    assert!(services.contains_key("s3") && services.contains_key("ssm"), "no SDK crates found: {:?}", services.keys());
    services
}

/// `(service, operation, file)` of every SDK call in the adapters: a zero-argument method call `.op()` whose
/// name is an operation of an SDK crate that the file names (`aws_sdk_<service>`). Whitespace is removed
/// first, so a call chain split over lines (`self\n.client\n.put_object()`) is found too.
fn sdk_calls() -> BTreeSet<(String, String, String)> {
    let operations = sdk_operations();
    let mut calls = BTreeSet::new();
    for (file, source) in adapter_sources() {
        let used: Vec<&String> =
            operations.keys().filter(|s| source.contains(&format!("aws_sdk_{}", s.replace('-', "_")))).collect();
        let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
        for (at, _) in compact.match_indices('.') {
            let rest = &compact[at + 1..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            if name.is_empty() || !rest[name.len()..].starts_with("()") {
                continue;
            }
            let services: Vec<&&String> = used.iter().filter(|s| operations[s.as_str()].contains(&name)).collect();
            assert!(services.len() <= 1, "{file}: .{name}() is an operation of {services:?}: split the file per service");
            if let Some(service) = services.first() {
                calls.insert((service.to_string(), name, file.clone()));
            }
        }
    }
    calls
}

/// The IAM statements of the role a function runs with (its `Role`'s inline policies and any
/// `AWS::IAM::Policy` / `AWS::IAM::ManagedPolicy` attached to it, plus SAM `Policies` statements).
fn role_statements(function_id: &str, function: &Value) -> Vec<Value> {
    let props = &function["Properties"];
    let role = props["Role"]["Fn::GetAtt"][0].as_str().unwrap_or_else(|| panic!("{function_id}: Role is not !GetAtt <role>.Arn"));
    statements_of_role(role).into_iter().chain(sam_policy_statements(props)).collect()
}

fn statements_of_role(role: &str) -> Vec<Value> {
    let r = &resources()[role];
    assert_eq!(r["Type"], "AWS::IAM::Role", "{role}");
    let mut out = Vec::new();
    for policy in r["Properties"]["Policies"].as_array().into_iter().flatten() {
        out.extend(statements(&policy["PolicyDocument"]));
    }
    for (_, p) in resources_of("AWS::IAM::Policy").into_iter().chain(resources_of("AWS::IAM::ManagedPolicy")) {
        if p["Properties"]["Roles"].as_array().into_iter().flatten().any(|x| x["Ref"] == role) {
            out.extend(statements(&p["Properties"]["PolicyDocument"]));
        }
    }
    out
}

fn sam_policy_statements(props: &Value) -> Vec<Value> {
    props["Policies"].as_array().into_iter().flatten().flat_map(statements).collect()
}

fn statements(document: &Value) -> Vec<Value> {
    match &document["Statement"] {
        Value::Array(s) => s.clone(),
        Value::Object(_) => vec![document["Statement"].clone()],
        _ => Vec::new(),
    }
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn glob(pattern: &str, action: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(action),
        Some((head, tail)) => {
            let a = action.to_ascii_lowercase();
            a.starts_with(&head.to_ascii_lowercase())
                && a.ends_with(&tail.to_ascii_lowercase())
                && a.len() >= head.len() + tail.len()
        }
    }
}

/// The Allow statements of a role that grant `action`.
fn granting<'a>(statements: &'a [Value], action: &str) -> Vec<&'a Value> {
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow" && list(&s["Action"]).iter().any(|a| a.as_str().is_some_and(|a| glob(a, action))))
        .collect()
}

fn sub_string(v: &Value) -> String {
    v["Fn::Sub"].as_str().or_else(|| v.as_str()).map(str::to_owned).unwrap_or_else(|| v.to_string())
}

// ----------------------------------------------------------------------------------------------------------
// The checks.
// ----------------------------------------------------------------------------------------------------------

#[test]
fn every_function_folder_has_a_function_resource_and_vice_versa() {
    let folders = function_folders();
    let functions = template_functions();
    let declared: BTreeSet<String> = functions.keys().cloned().collect();
    assert_eq!(folders, declared, "functions/ folders (left) and AWS::Serverless::Function binaries (right) differ");
    for (name, (id, r)) in &functions {
        let manifest = read(&format!("functions/{name}/Cargo.toml"));
        assert!(manifest.contains(&format!("name = \"{name}\"")), "functions/{name}/Cargo.toml: package name is not {name}");
        let p = effective_properties(r);
        assert_eq!(p["FunctionName"], json!({"Fn::Sub": format!("${{AWS::StackName}}-{name}")}), "{id}: FunctionName");
        assert_eq!(p["CodeUri"], ".", "{id}: CodeUri must be the workspace root (cargo-lambda builds the binary)");
        assert_eq!(p["Runtime"], "provided.al2023", "{id}");
        assert_eq!(p["Architectures"], json!(["arm64"]), "{id}");
        assert_eq!(p["Handler"], "bootstrap", "{id}");
        assert_eq!(p["LoggingConfig"]["LogFormat"], "JSON", "{id}");
        assert!(p["LoggingConfig"]["LogGroup"].is_object(), "{id}: LoggingConfig.LogGroup names the stack's log group");
    }
}

#[test]
fn every_variable_the_code_reads_is_set_on_every_function() {
    let read_by_code: BTreeSet<String> = SOURCES.configuration.iter().flat_map(|file| dr_variables(&read(file))).collect();
    assert!(read_by_code.contains("DR_SSM_PREFIX"), "the scan found no variables: {read_by_code:?}");
    for v in TEST_ONLY_VARIABLES {
        assert!(read_by_code.contains(*v), "{v} is no longer read by the code: remove it from TEST_ONLY_VARIABLES");
    }
    let required: BTreeSet<&String> = read_by_code.iter().filter(|v| !TEST_ONLY_VARIABLES.contains(&v.as_str())).collect();
    for (name, (id, r)) in template_functions() {
        let vars = effective_properties(r)["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        for v in &required {
            let excused = DELIBERATELY_UNSET.iter().any(|(f, var, _)| *f == name && var == v);
            assert!(vars.contains_key(v.as_str()) || excused, "{id} ({name}) does not set {v}, which the code reads");
        }
        for v in TEST_ONLY_VARIABLES {
            assert!(!vars.contains_key(*v), "{id} sets the test-only {v}");
        }
        for key in vars.keys().filter(|k| k.starts_with("DR_")) {
            assert!(read_by_code.contains(key), "{id} sets {key}, which no code reads (typo?)");
        }
    }
}

#[test]
fn the_lock_lease_outlasts_every_function_timeout() {
    for (name, (id, r)) in template_functions() {
        let p = effective_properties(r);
        let (timeout, _) = number(&p["Timeout"]);
        let (lease, min_lease) = number(&p["Environment"]["Variables"]["DR_LOCK_LEASE_SECONDS"]);
        assert!(lease > timeout && min_lease > timeout, "{id} ({name}): lease {lease} (min {min_lease}) <= timeout {timeout}");
    }
}

#[test]
fn the_iam_statements_cover_every_sdk_call_for_every_function() {
    let calls = sdk_calls();
    assert!(calls.iter().any(|(s, op, _)| s == "ssm" && op == "put_parameter"), "the scan found no SSM calls: {calls:?}");
    // The functions' calls: the operator's (dr only) are checked by the_operators_calls_are_dr_s_and_no_function_role_grants_them.
    let required = code_actions();
    for (name, (id, r)) in template_functions() {
        let statements = role_statements(id, r);
        for action in &required {
            let exempt = NOT_GRANTED.iter().find(|(f, a, _)| *f == name && a == action);
            let grants = granting(&statements, action);
            if let Some((_, _, reason)) = exempt {
                assert!(grants.is_empty(), "{id} ({name}) is granted {action}, listed in NOT_GRANTED ({reason})");
                continue;
            }
            assert!(!grants.is_empty(), "{id} ({name}) lacks {action}, which the code calls");
            let resources: String = grants.iter().map(|s| s["Resource"].to_string()).collect();
            if let Some((_, names)) = ACTION_RESOURCES.iter().find(|(prefix, _)| action.starts_with(prefix)) {
                for n in *names {
                    assert!(resources.contains(n), "{id} ({name}): {action} is not granted on {n}: {resources}");
                }
            }
        }
    }
    for (function, action, _) in NOT_GRANTED {
        assert!(required.contains(action), "NOT_GRANTED lists {action} for {function}, which the code no longer calls");
    }
}

#[test]
fn every_control_bucket_prefix_the_code_uses_is_granted() {
    let prefixes = control_bucket_prefixes();
    assert!(prefixes.contains_key("locks") && prefixes.contains_key("reports"), "the scan found no keys: {prefixes:?}");
    let functions = template_functions();
    for (prefix, seen_at) in &prefixes {
        if NOT_CONTROL_BUCKET_KEYS.iter().any(|(p, _)| p == prefix) {
            continue;
        }
        let wanted = format!("${{ControlBucket.Arn}}/{prefix}/");
        let granted = functions.iter().any(|(_, (id, r))| {
            let statements = role_statements(id, r);
            ["s3:GetObject", "s3:PutObject"].iter().any(|action| {
                granting(&statements, action)
                    .iter()
                    .any(|s| list(&s["Resource"]).iter().any(|r| sub_string(r).starts_with(&wanted)))
            })
        });
        assert!(granted, "no function may read or write {prefix}/ in the control bucket, which the code uses ({seen_at})");
    }
    for (prefix, _) in NOT_CONTROL_BUCKET_KEYS {
        assert!(prefixes.contains_key(*prefix), "NOT_CONTROL_BUCKET_KEYS lists {prefix}, which the code no longer uses");
    }
}

#[test]
fn parameter_writes_stay_on_active_and_the_drill_copies() {
    for (name, (id, r)) in template_functions() {
        for action in [
            "ssm:PutParameter",
            "ssm:LabelParameterVersion",
            "ssm:UnlabelParameterVersion",
            "ssm:DeleteParameter",
            "ssm:DeleteParameters",
        ] {
            for s in granting(&role_statements(id, r), action) {
                for resource in list(&s["Resource"]) {
                    let arn = sub_string(&resource);
                    let relative = arn.split_once("parameter${SsmPrefix}").map(|(_, rest)| rest).unwrap_or(&arn);
                    let allowed = if action.starts_with("ssm:Delete") { &WRITABLE_PARAMETERS[1..] } else { WRITABLE_PARAMETERS };
                    assert!(allowed.contains(&relative), "{id} ({name}): {action} on {arn}; allowed: {allowed:?}");
                }
            }
        }
    }
    for (id, p) in resources_of("AWS::SSM::Parameter") {
        let name = sub_string(&p["Properties"]["Name"]);
        assert!(!name.ends_with("/active"), "{id}: {{prefix}}/active is runtime state, written by the handlers only");
    }
}

#[test]
fn no_role_statement_is_unscoped() {
    let text = read("template.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let roles = resources_of("AWS::IAM::Role");
    let mut all: Vec<(String, Value)> = Vec::new();
    for (id, _) in &roles {
        all.extend(statements_of_role(id).into_iter().map(|s| (id.to_string(), s)));
    }
    for (id, f) in resources_of("AWS::Serverless::Function") {
        all.extend(sam_policy_statements(&f["Properties"]).into_iter().map(|s| (id.to_string(), s)));
    }
    assert!(all.len() > 10, "found only {} statements", all.len());
    for (id, s) in &all {
        assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none(), "{id}: NotAction/NotResource in {s}");
        for action in list(&s["Action"]) {
            let a = action.as_str().unwrap_or_default();
            assert!(a != "*" && !a.ends_with(":*"), "{id}: wildcard action {a}");
        }
        if list(&s["Resource"]).iter().any(|r| r == "*") {
            for action in list(&s["Action"]) {
                let a = action.as_str().unwrap_or_default();
                assert!(NO_RESOURCE_LEVEL.contains(&a), "{id}: {a} on Resource \"*\" (it has resource-level permissions)");
            }
        }
    }
    // Every `Resource: "*"` line of a role is commented on the line above (key policies included: there "*" is
    // the key itself, and the comment says so).
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with("Resource:") && t.contains("\"*\"") {
            let above = lines[..i].iter().rev().map(|l| l.trim()).find(|l| !l.is_empty()).unwrap_or_default();
            assert!(above.starts_with('#'), "template.yaml:{}: Resource \"*\" without a comment above it", i + 1);
        }
    }
}

#[test]
fn consumers_and_destinations_have_their_queue_and_key_permissions() {
    let functions: BTreeMap<&str, (&str, &Value)> = template_functions().into_values().map(|(id, r)| (id, (id, r))).collect();
    let key_of = |queue: &str| resources()[queue]["Properties"]["KmsMasterKeyId"]["Ref"].as_str().map(str::to_owned);
    let check = |function: &str, queue: &str, actions: &[&str], key_actions: &[&str]| {
        let (id, r) = functions[function];
        let statements = role_statements(id, r);
        for action in actions {
            let on: String = granting(&statements, action).iter().map(|s| s["Resource"].to_string()).collect();
            assert!(on.contains(queue), "{id}: {action} not granted on {queue}");
        }
        if let Some(key) = key_of(queue) {
            for action in key_actions {
                let on: String = granting(&statements, action).iter().map(|s| s["Resource"].to_string()).collect();
                assert!(on.contains(&key), "{id}: {action} not granted on {key} ({queue} is encrypted with it)");
            }
        }
    };
    let mappings = resources_of("AWS::Lambda::EventSourceMapping");
    assert!(!mappings.is_empty(), "no event source mapping");
    for (id, m) in mappings {
        let p = &m["Properties"];
        let queue = p["EventSourceArn"]["Fn::GetAtt"][0].as_str().unwrap();
        let function = p["FunctionName"]["Ref"].as_str().unwrap();
        assert!(list(&p["FunctionResponseTypes"]).contains(&json!("ReportBatchItemFailures")), "{id}: ReportBatchItemFailures");
        assert!(p["BatchSize"].is_number() && p["MaximumBatchingWindowInSeconds"].is_number(), "{id}: batch size and window");
        let q = &resources()[queue]["Properties"];
        assert!(q["RedrivePolicy"]["deadLetterTargetArn"].is_object(), "{queue}: no dead-letter queue");
        let (timeout, _) = number(&effective_properties(functions[function].1)["Timeout"]);
        let (visibility, _) = number(&q["VisibilityTimeout"]);
        assert!(visibility >= 6.0 * timeout, "{queue}: visibility {visibility} s < 6 x the timeout of {function}");
        let consume = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"];
        check(function, queue, &consume, &["kms:Decrypt"]);
    }
    for (id, c) in resources_of("AWS::Lambda::EventInvokeConfig") {
        let p = &c["Properties"];
        let function = p["FunctionName"]["Ref"].as_str().unwrap();
        let queue = p["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0].as_str();
        let queue = queue.unwrap_or_else(|| panic!("{id}: no on-failure destination"));
        check(function, queue, &["sqs:SendMessage"], &["kms:GenerateDataKey", "kms:Decrypt"]);
    }
    // Publishing to an encrypted topic needs the key too.
    for (name, (id, r)) in template_functions() {
        let statements = role_statements(id, r);
        for (topic, t) in resources_of("AWS::SNS::Topic") {
            if let Some(key) = t["Properties"]["KmsMasterKeyId"]["Ref"].as_str() {
                for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
                    let on: String = granting(&statements, action).iter().map(|s| s["Resource"].to_string()).collect();
                    assert!(on.contains(key), "{id} ({name}) publishes to {topic}, encrypted with {key}, without {action}");
                }
            }
        }
    }
}

#[test]
fn the_watchers_are_watched() {
    let alarms = resources_of("AWS::CloudWatch::Alarm");
    let pages = |a: &Value| list(&a["Properties"]["AlarmActions"]).iter().any(|x| x["Ref"] == "PagingTopic");
    for (name, (id, _)) in template_functions() {
        for metric in ["Errors", "Throttles"] {
            let found = alarms.iter().any(|(_, a)| {
                let p = &a["Properties"];
                p["Namespace"] == "AWS/Lambda"
                    && p["MetricName"] == metric
                    && list(&p["Dimensions"]).iter().any(|d| d["Value"]["Ref"] == id)
                    && pages(a)
            });
            assert!(found, "{id} ({name}) has no {metric} alarm paging the paging topic");
        }
    }
    let mut dead_letter_queues: BTreeSet<String> = BTreeSet::new();
    for (_, q) in resources_of("AWS::SQS::Queue") {
        if let Some(dlq) = q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].as_str() {
            dead_letter_queues.insert(dlq.to_owned());
        }
    }
    for (_, c) in resources_of("AWS::Lambda::EventInvokeConfig") {
        dead_letter_queues.extend(
            c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0].as_str().map(str::to_owned),
        );
    }
    for (_, r) in resources_of("AWS::Events::Rule") {
        for t in list(&r["Properties"]["Targets"]) {
            dead_letter_queues.extend(t["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].as_str().map(str::to_owned));
        }
    }
    for (_, s) in resources_of("AWS::Scheduler::Schedule") {
        dead_letter_queues
            .extend(s["Properties"]["Target"]["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].as_str().map(str::to_owned));
    }
    assert!(dead_letter_queues.len() >= 3, "dead-letter queues: {dead_letter_queues:?}");
    let watches = |queue: &str, metric: &str| {
        alarms.iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"] == "AWS/SQS"
                && p["MetricName"] == metric
                && list(&p["Dimensions"]).iter().any(|d| d["Value"]["Fn::GetAtt"] == json!([queue, "QueueName"]))
                && pages(a)
        })
    };
    for q in &dead_letter_queues {
        assert!(watches(q, "ApproximateNumberOfMessagesVisible"), "dead-letter queue {q} has no depth alarm");
    }
    for (_, m) in resources_of("AWS::Lambda::EventSourceMapping") {
        let queue = m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0].as_str().unwrap();
        assert!(watches(queue, "ApproximateAgeOfOldestMessage"), "{queue} has no age-of-oldest-message alarm");
    }
}

#[test]
fn the_dashboard_shows_every_metric_the_functions_emit() {
    let metrics = read(SOURCES.metrics);
    // `Metric { name: "X", unit: ..., dimension: "Y" }` literals, and the namespace constant.
    let quoted_after =
        |text: &str, key: &str| text.split_once(key).and_then(|(_, rest)| rest.split('"').nth(1)).map(str::to_owned);
    let namespace =
        quoted_after(&metrics, "pub const NAMESPACE: &str = ").unwrap_or_else(|| panic!("no NAMESPACE in {}", SOURCES.metrics));
    let mut emitted: Vec<(String, String)> = Vec::new();
    for (at, _) in metrics.match_indices("Metric { name: ") {
        let literal = &metrics[at..at + metrics[at..].find('}').unwrap()];
        emitted.push((quoted_after(literal, "name: ").unwrap(), quoted_after(literal, "dimension: ").unwrap()));
    }
    assert!(emitted.len() >= 4, "no metrics found in {}: {emitted:?}", SOURCES.metrics);
    let dashboards = resources_of("AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = sub_string(&dashboards[0].1["Properties"]["DashboardBody"]);
    let parsed: Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    assert!(parsed["widgets"].as_array().is_some_and(|w| !w.is_empty()));
    // Shown either by a SEARCH over the metric's dimension schema or as an explicit metric line.
    for (name, dimension) in &emitted {
        let search = format!("{{{namespace},Environment,{dimension}}} MetricName=\\\"{name}\\\"");
        let line = format!("[\"{namespace}\", \"{name}\", \"Environment\"");
        assert!(body.contains(&search) || body.contains(&line), "the dashboard does not show {name} by {dimension}: {search}");
    }
    for (id, _) in resources_of("AWS::CloudWatch::Alarm") {
        assert!(body.contains(&format!("${{{id}.Arn}}")), "the dashboard's alarm widget lacks {id}");
    }
}

#[test]
fn the_alarm_deliveries_reach_health_alarm() {
    let health = template_functions()["health-alarm"].0;
    let rules = resources_of("AWS::Events::Rule");
    let rule = rules.iter().find(|(_, r)| list(&r["Properties"]["Targets"]).iter().any(|t| t["Arn"]["Fn::GetAtt"][0] == health));
    let (rule_id, rule) = rule.expect("an EventBridge rule targets health-alarm");
    let pattern = &rule["Properties"]["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.cloudwatch"]));
    assert_eq!(pattern["detail-type"], json!(["CloudWatch Alarm State Change"]));
    assert!(pattern["detail"]["alarmName"]["Ref"].is_string(), "{rule_id}: narrowed to the failover alarms (a parameter)");
    let target = &list(&rule["Properties"]["Targets"])[0];
    assert!(target["RetryPolicy"].is_object() && target["DeadLetterConfig"].is_object(), "{rule_id}: retry policy and DLQ");
    let permissions = resources_of("AWS::Lambda::Permission");
    let permission = |principal: &str| {
        permissions
            .iter()
            .find(|(_, p)| p["Properties"]["Principal"] == principal && p["Properties"]["FunctionName"]["Ref"] == health)
    };
    let (_, direct) =
        permission("lambda.alarms.cloudwatch.amazonaws.com").expect("the alarms' direct action may invoke health-alarm");
    assert!(direct["Properties"]["SourceAccount"].is_object() && direct["Properties"]["SourceArn"].is_object());
    assert!(sub_string(&direct["Properties"]["SourceArn"]).contains(":cloudwatch:"));
    let (_, events) = permission("events.amazonaws.com").expect("the rule may invoke health-alarm");
    assert_eq!(events["Properties"]["SourceArn"]["Fn::GetAtt"][0], *rule_id);
}

#[test]
fn the_schedules_run_check_and_snapshot_through_manual_trigger() {
    let manual = template_functions()["manual-trigger"].0;
    let inputs: BTreeSet<String> = resources_of("AWS::Scheduler::Schedule")
        .into_iter()
        .filter(|(_, s)| s["Properties"]["Target"]["Arn"]["Fn::GetAtt"][0] == manual)
        .map(|(_, s)| s["Properties"]["Target"]["Input"].as_str().unwrap().to_owned())
        .collect();
    let commands: BTreeSet<String> =
        inputs.iter().map(|i| serde_json::from_str::<Value>(i).unwrap()["command"].as_str().unwrap().to_owned()).collect();
    assert_eq!(commands, BTreeSet::from(["check".to_owned(), "snapshot".to_owned()]), "{inputs:?}");
}

#[test]
fn a_failed_first_deploy_leaves_nothing_behind() {
    // A create that fails rolls back. A resource kept by `DeletionPolicy: Retain` survives that rollback, and one
    // with a fixed name (the log groups) then fails the next create with "already exists". RetainExceptOnCreate
    // keeps the data on a stack delete or update, and deletes what the failed create made.
    for (id, r) in resources() {
        if let Some(policy) = r.get("DeletionPolicy") {
            assert!(
                policy == "RetainExceptOnCreate" || policy == "Delete",
                "{id}: DeletionPolicy {policy} survives the rollback of a failed first deploy: use RetainExceptOnCreate"
            );
        }
    }
    // What holds evidence or data is still kept on a delete.
    for kind in ["AWS::Logs::LogGroup", "AWS::KMS::Key", "AWS::S3::Bucket"] {
        for (id, r) in resources_of(kind) {
            assert_eq!(r["DeletionPolicy"], "RetainExceptOnCreate", "{id} ({kind})");
            assert_eq!(r["UpdateReplacePolicy"], "Retain", "{id} ({kind}): a replacement keeps the old one");
        }
    }
}

/// The IAM actions the functions' SDK calls need (OPERATION_ACTIONS over `sdk_calls()`, the operator's left out).
fn code_actions() -> BTreeSet<&'static str> {
    let operator = root().join(SOURCES.operator);
    let mut required = BTreeSet::new();
    for (service, op, file) in sdk_calls().iter().filter(|(_, _, file)| !Path::new(file).starts_with(&operator)) {
        let actions = OPERATION_ACTIONS
            .iter()
            .find(|(s, o, _)| s == service && o == op)
            .map(|(_, _, a)| *a)
            .unwrap_or_else(|| panic!("{file} calls {service}.{op}(): add its IAM action(s) to OPERATION_ACTIONS"));
        required.extend(actions.iter().copied());
    }
    required
}

/// Every action an Allow statement names (no wildcards: each action is named so that it can be checked).
fn granted_actions(id: &str, statements: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
        for a in list(&s["Action"]) {
            let a = a.as_str().unwrap_or_else(|| panic!("{id}: action {a} is not a string")).to_owned();
            assert!(!a.contains('*'), "{id}: {a}: name each action (the exact-grant check cannot see through wildcards)");
            out.insert(a);
        }
    }
    out
}

#[test]
fn each_role_grants_exactly_what_the_code_calls() {
    let code = code_actions();
    for (name, (id, r)) in template_functions() {
        let statements = role_statements(id, r);
        let granted = granted_actions(id, &statements);
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for action in &code {
            if !NOT_GRANTED.iter().any(|(f, a, _)| *f == name && a == action) {
                expected.insert((*action).to_owned(), "the code calls it".to_owned());
            }
        }
        for (function, action, reason) in INFRASTRUCTURE_GRANTS {
            if *function == "*" || *function == name {
                expected.insert((*action).to_owned(), (*reason).to_owned());
            }
        }
        for action in &granted {
            assert!(
                expected.contains_key(action),
                "{id} ({name}) is granted {action}, which no code calls and INFRASTRUCTURE_GRANTS does not explain: \
                 remove the grant, or grant it with the code that uses it"
            );
        }
        for (action, why) in &expected {
            assert!(granted.contains(action), "{id} ({name}) lacks {action} ({why})");
        }
        // The code's S3, SSM and SNS calls touch the control bucket, the parameters under the prefix and the two
        // topics, nothing else: a grant on any other resource (the data buckets) is one no code uses.
        for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
            for action in list(&s["Action"]).iter().filter_map(Value::as_str).filter(|a| code.contains(a)) {
                let Some((_, names)) = ACTION_RESOURCES.iter().find(|(prefix, _)| action.starts_with(prefix)) else {
                    continue;
                };
                let also = ALSO_ON.iter().filter(|(a, _)| *a == action).flat_map(|(_, n)| n.iter());
                let names: Vec<&str> = names.iter().chain(also).copied().collect();
                for resource in list(&s["Resource"]) {
                    let text = resource.to_string();
                    assert!(
                        names.iter().any(|n| text.contains(n)),
                        "{id} ({name}): {action} on {text}, which the code never touches (it uses {names:?})"
                    );
                }
            }
        }
    }
    // Control bucket prefixes, the other way round: each granted prefix is one the code builds keys under.
    let prefixes = control_bucket_prefixes();
    for (name, (id, r)) in template_functions() {
        for s in role_statements(id, r) {
            for resource in list(&s["Resource"]) {
                let arn = sub_string(&resource);
                let Some(rest) = arn.strip_prefix("${ControlBucket.Arn}/") else { continue };
                let prefix = rest.split('/').next().unwrap_or_default();
                assert!(prefixes.contains_key(prefix), "{id} ({name}): granted on {arn}, a prefix the code never uses");
            }
        }
    }
    for (function, action, _) in INFRASTRUCTURE_GRANTS {
        assert!(!code.contains(action), "INFRASTRUCTURE_GRANTS lists {action} for {function}, which the code calls itself");
    }
    // Roles no function runs with: each is listed in SERVICE_ROLES, trusted by its service, and grants exactly
    // the listed actions.
    let function_roles: BTreeSet<&str> =
        template_functions().values().map(|(_, f)| f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap()).collect();
    for (role, _, _) in SERVICE_ROLES {
        let kind = resources().get(*role).map(|r| r["Type"].clone());
        assert_eq!(kind, Some(json!("AWS::IAM::Role")), "SERVICE_ROLES lists {role}, which the template lacks");
    }
    for (role, r) in resources_of("AWS::IAM::Role") {
        if function_roles.contains(role) {
            continue;
        }
        let (_, service, actions) = SERVICE_ROLES
            .iter()
            .find(|(name, _, _)| *name == role)
            .unwrap_or_else(|| panic!("{role}: a role no function uses and SERVICE_ROLES does not list"));
        let trust = statements(&r["Properties"]["AssumeRolePolicyDocument"]);
        assert!(
            trust.iter().all(|t| list(&t["Principal"]["Service"]) == vec![json!(service)]),
            "{role}: trusted by {trust:?}, expected {service} only"
        );
        let granted = granted_actions(role, &statements_of_role(role));
        let expected: BTreeSet<String> = actions.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(granted, expected, "{role}: granted (left) and SERVICE_ROLES (right) differ");
    }
}

#[test]
fn the_operators_calls_are_dr_s_and_no_function_role_grants_them() {
    // `dr` asks who the operator is (STS GetCallerIdentity: no permission exists for it) and, with `--function`,
    // invokes manual-trigger (the operator's lambda:InvokeFunction, README). No function makes either call.
    let operator = root().join(SOURCES.operator);
    let calls: BTreeSet<(String, String)> = sdk_calls()
        .into_iter()
        .filter(|(_, _, file)| Path::new(file).starts_with(&operator))
        .map(|(service, op, _)| (service, op))
        .collect();
    let expected: BTreeSet<(String, String)> =
        [("lambda", "invoke"), ("sts", "get_caller_identity")].iter().map(|(s, o)| ((*s).to_owned(), (*o).to_owned())).collect();
    assert_eq!(calls, expected, "the operator's calls changed: say who needs what in README (break-glass) and here");
    for (name, (id, r)) in template_functions() {
        let granted = granted_actions(id, &role_statements(id, r));
        assert!(!granted.contains("lambda:InvokeFunction"), "{id} ({name}) may invoke Lambda, which no function does");
    }
}

#[test]
fn every_function_that_reads_the_control_bucket_may_list_it_unconditionally() {
    // Without s3:ListBucket on the bucket, S3 answers a GetObject of a missing key with 403 AccessDenied instead
    // of 404 NoSuchKey, and a GetObject carries no `s3:prefix`: a ListBucket grant limited by `s3:prefix` does
    // not count. The first read of every failover (`executions/{id}.json`) is of a key that does not exist yet.
    for (name, (id, r)) in template_functions() {
        let statements = role_statements(id, r);
        let reads = granting(&statements, "s3:GetObject")
            .iter()
            .any(|s| list(&s["Resource"]).iter().any(|x| sub_string(x).starts_with("${ControlBucket.Arn}/")));
        if !reads {
            continue;
        }
        let plain = granting(&statements, "s3:ListBucket").iter().any(|s| {
            s.get("Condition").is_none()
                && list(&s["Resource"]).iter().any(|x| x["Fn::GetAtt"] == json!(["ControlBucket", "Arn"]))
        });
        assert!(plain, "{id} ({name}) reads the control bucket without s3:ListBucket on it free of conditions");
    }
}

/// Every string an intrinsic value can resolve to: literals, `!Sub` texts, `{Ref}`, `{GetAtt}`, both `!If` branches.
fn leaves(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(leaves).collect(),
        Value::Object(m) if m.contains_key("Fn::If") => list(&m["Fn::If"]).iter().skip(1).flat_map(leaves).collect(),
        Value::Object(m) if m.contains_key("Fn::Sub") => match &m["Fn::Sub"] {
            Value::Array(a) => vec![a[0].as_str().unwrap_or_default().to_owned()],
            other => vec![other.as_str().unwrap_or_default().to_owned()],
        },
        Value::Object(m) if m.contains_key("Ref") => vec![format!("{{{}}}", m["Ref"].as_str().unwrap_or_default())],
        Value::Object(m) if m.contains_key("Fn::GetAtt") => vec![format!("{{{}}}", list(&m["Fn::GetAtt"])[0])],
        other => vec![other.to_string()],
    }
}

/// An ARN that names one resource or a name prefix: a `*` only after a non-empty start of the resource name
/// (`alarm:${AWS::StackName}-*`, never `alarm:*`).
fn is_narrow(arn: &str) -> bool {
    match arn.split_once('*') {
        None => !arn.is_empty(),
        Some((head, _)) => !head.ends_with(':') && !head.ends_with('/') && !head.is_empty(),
    }
}

/// Service principals whose statements are narrowed by something other than `aws:SourceArn`, with the reason.
const NARROWED_OTHERWISE: &[(&str, &str, &str)] = &[
    (
        "logs.${AWS::Region}.amazonaws.com",
        "kms:EncryptionContext:aws:logs:arn",
        "CloudWatch Logs names the log group in the encryption context, not in aws:SourceArn",
    ),
    ("lambda.amazonaws.com", "", "the functions' execution roles: Lambda assumes them without a source ARN"),
];

#[test]
fn service_principals_are_narrowed_to_their_sources() {
    // Resource policies and trust policies that admit an AWS service: each must say which of the service's
    // resources may act (aws:SourceArn, one ARN or a name prefix), not just which account.
    let mut checked = 0;
    let mut policies: Vec<(String, Vec<Value>)> = Vec::new();
    for (id, k) in resources_of("AWS::KMS::Key") {
        policies.push((id.to_owned(), statements(&k["Properties"]["KeyPolicy"])));
    }
    for kind in ["AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"] {
        for (id, p) in resources_of(kind) {
            policies.push((id.to_owned(), statements(&p["Properties"]["PolicyDocument"])));
        }
    }
    for (id, r) in resources_of("AWS::IAM::Role") {
        policies.push((format!("{id} (trust)"), statements(&r["Properties"]["AssumeRolePolicyDocument"])));
    }
    for (id, policy) in &policies {
        for statement in policy {
            // Statements inside !If: the branch that applies.
            let statement = if statement.get("Fn::If").is_some() { &list(&statement["Fn::If"])[1] } else { statement };
            if statement["Effect"] != "Allow" {
                continue;
            }
            for service in leaves(&statement["Principal"]["Service"]) {
                checked += 1;
                let condition = &statement["Condition"];
                if let Some((_, key, _)) = NARROWED_OTHERWISE.iter().find(|(s, _, _)| *s == service) {
                    let present =
                        key.is_empty() || condition.as_object().into_iter().flatten().any(|(_, m)| m.get(*key).is_some());
                    assert!(present, "{id}: {service} without its {key} condition");
                    continue;
                }
                let arns: Vec<String> = ["ArnEquals", "ArnLike", "StringEquals", "StringLike"]
                    .iter()
                    .flat_map(|op| leaves(&condition[*op]["aws:SourceArn"]))
                    .collect();
                assert!(!arns.is_empty(), "{id}: {service} is admitted without an aws:SourceArn condition: {statement}");
                for arn in &arns {
                    assert!(
                        is_narrow(arn),
                        "{id}: {service} is admitted for every resource of {arn}: narrow it to a name or prefix"
                    );
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} service statements found");
    for (id, p) in resources_of("AWS::Lambda::Permission") {
        let arns = leaves(&p["Properties"]["SourceArn"]);
        assert!(
            !arns.is_empty() && arns.iter().all(|a| is_narrow(a)),
            "{id}: SourceArn {arns:?} admits every resource of its kind"
        );
    }
    // Each topic admits a service only if something of that service in this stack notifies it.
    for (id, p) in resources_of("AWS::SNS::TopicPolicy") {
        for statement in statements(&p["Properties"]["PolicyDocument"]) {
            for service in leaves(&statement["Principal"]["Service"]) {
                for topic in list(&statement["Resource"]).iter().filter_map(|t| t["Ref"].as_str()) {
                    let used = match service.as_str() {
                        "cloudwatch.amazonaws.com" => resources_of("AWS::CloudWatch::Alarm").iter().any(|(_, a)| {
                            let p = &a["Properties"];
                            list(&p["AlarmActions"]).iter().chain(list(&p["OKActions"]).iter()).any(|x| x["Ref"] == topic)
                        }),
                        "events.amazonaws.com" => resources_of("AWS::Events::Rule")
                            .iter()
                            .any(|(_, r)| list(&r["Properties"]["Targets"]).iter().any(|t| t["Arn"]["Ref"] == topic)),
                        other => panic!("{id}: {other} may publish to {topic}: list what uses it here"),
                    };
                    assert!(used, "{id}: {service} may publish to {topic}, and nothing of it in this stack does");
                }
            }
        }
    }
}

/// Alarms on `namespace`/`metric` whose dimension `dimension` is `value` (a `{"Ref": ..}` or `{"Fn::GetAtt": ..}`).
fn alarms_on(namespace: &str, metric: &str, dimension: &str, value: &Value) -> Vec<(&'static str, &'static Value)> {
    resources_of("AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"] == namespace
                && p["MetricName"] == metric
                && list(&p["Dimensions"]).iter().any(|d| d["Name"] == dimension && d["Value"] == *value)
        })
        .collect()
}

#[test]
fn the_paging_path_is_watched() {
    // A DR stack whose pages silently fail is the worst case. Each way a page or an alarm event can be lost has
    // an alarm, and those alarms notify the chat topic too: a page that cannot reach the pager reaches people
    // another way.
    let two_paths = |id: &str, a: &Value| {
        let actions = list(&a["Properties"]["AlarmActions"]);
        assert!(
            actions.contains(&json!({"Ref": "PagingTopic"})) && actions.contains(&json!({"Ref": "ChatTopic"})),
            "{id}: a paging-path alarm must notify PagingTopic and ChatTopic, not {actions:?}"
        );
    };
    let expect = |namespace: &str, metric: &str, dimension: &str, value: Value, what: &str| {
        let found = alarms_on(namespace, metric, dimension, &value);
        assert!(!found.is_empty(), "no alarm on {namespace} {metric} of {value}: {what}");
        for (id, a) in found {
            two_paths(id, a);
        }
    };
    let paging = json!({"Fn::GetAtt": ["PagingTopic", "TopicName"]});
    expect("AWS/SNS", "NumberOfNotificationsFailed", "TopicName", paging.clone(), "pages that SNS could not deliver");
    expect("AWS/SNS", "NumberOfNotificationsFailedToRedriveToDlq", "TopicName", paging, "failed pages lost for good");
    for (rule, r) in resources_of("AWS::Events::Rule") {
        if list(&r["Properties"]["Targets"]).is_empty() {
            continue;
        }
        let name = json!({"Ref": rule});
        expect("AWS/Events", "FailedInvocations", "RuleName", name.clone(), "events the rule could not deliver");
        expect("AWS/Events", "InvocationsFailedToBeSentToDlq", "RuleName", name, "events lost on the way to the DLQ");
    }
    for (id, c) in resources_of("AWS::Lambda::EventInvokeConfig") {
        let function = c["Properties"]["FunctionName"].clone();
        let f = function["Ref"].as_str().unwrap_or(id).to_owned();
        expect("AWS/Lambda", "AsyncEventsDropped", "FunctionName", function.clone(), &format!("async events of {f} dropped"));
        expect(
            "AWS/Lambda",
            "DestinationDeliveryFailures",
            "FunctionName",
            function,
            &format!("{f}'s failure destination refused"),
        );
    }
    // The pager's subscription (created by operators, docs/deploy.md) redrives failed deliveries to a queue of
    // this stack: its policy admits the paging topic, it is watched, and an output names it for the redrive policy.
    let queues: Vec<String> = resources_of("AWS::SQS::QueuePolicy")
        .into_iter()
        .filter(|(_, p)| {
            statements(&p["Properties"]["PolicyDocument"]).iter().any(|s| {
                leaves(&s["Principal"]["Service"]).contains(&"sns.amazonaws.com".to_owned())
                    && leaves(&s["Condition"]["ArnEquals"]["aws:SourceArn"]).contains(&"{PagingTopic}".to_owned())
            })
        })
        .flat_map(|(_, p)| list(&p["Properties"]["Queues"]))
        .filter_map(|q| q["Ref"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(queues.len(), 1, "one queue for the pager subscription's failed deliveries: {queues:?}");
    let queue = queues[0].as_str();
    let depth =
        alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", &json!({"Fn::GetAtt": [queue, "QueueName"]}));
    assert!(!depth.is_empty(), "{queue}: no depth alarm");
    for (id, a) in depth {
        two_paths(id, a);
    }
    let outputs = template()["Outputs"].as_object().unwrap();
    assert!(
        outputs.values().any(|o| o["Value"] == json!({"Fn::GetAtt": [queue, "Arn"]})),
        "no output gives {queue}'s ARN (the pager subscription's RedrivePolicy needs it)"
    );
}

#[test]
fn functions_are_traced_and_reservations_cannot_throttle_their_triggers() {
    for (name, (id, r)) in template_functions() {
        assert_eq!(effective_properties(r)["Tracing"], "Active", "{id} ({name}): Tracing");
        let statements = role_statements(id, r);
        for action in ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] {
            assert!(!granting(&statements, action).is_empty(), "{id} ({name}) is traced without {action}");
        }
    }
    // A reservation below what a trigger runs at once throttles it: the SQS mapping's MaximumConcurrency (its
    // batches would return to the queue and, after maxReceiveCount, land in the DLQ), and the three deliveries
    // of one alarm state change (EventBridge, direct action, SNS) that reach health-alarm together.
    const ALARM_DELIVERIES: f64 = 3.0;
    let param = &template()["Parameters"]["ReservedConcurrency"];
    let allowed: Vec<f64> = list(&param["AllowedValues"]).iter().map(|v| number(v).0).collect();
    assert!(!allowed.is_empty(), "ReservedConcurrency: AllowedValues (0 = no reservation, else enough for the triggers)");
    let smallest = allowed.iter().copied().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    assert!(smallest >= ALARM_DELIVERIES, "ReservedConcurrency allows {smallest}, below {ALARM_DELIVERIES} alarm deliveries");
    for (id, m) in resources_of("AWS::Lambda::EventSourceMapping") {
        let (max, _) = number(&m["Properties"]["ScalingConfig"]["MaximumConcurrency"]);
        assert!(
            smallest > max,
            "{id}: MaximumConcurrency {max} >= the smallest reservation {smallest}: the mapping would be throttled"
        );
    }
}

#[test]
fn an_invocation_of_manual_trigger_outside_the_schedules_and_drills_pages() {
    let manual = template_functions()["manual-trigger"].0;
    let rules = resources_of("AWS::Events::Rule");
    let (id, rule) = rules
        .iter()
        .find(|(_, r)| {
            let p = &r["Properties"]["EventPattern"];
            p["source"] == json!(["aws.lambda"]) && p["detail"]["requestParameters"]["functionName"].to_string().contains(manual)
        })
        .expect("an EventBridge rule on CloudTrail's Invoke events of manual-trigger");
    let p = &rule["Properties"]["EventPattern"];
    assert_eq!(p["detail-type"], json!(["AWS API Call via CloudTrail"]), "{id}");
    assert!(list(&p["detail"]["eventName"]).contains(&json!("Invoke")), "{id}: eventName");
    assert!(p["detail"].to_string().contains("SchedulerRole"), "{id}: the schedules' own invocations must not page");
    assert!(p["detail"].to_string().contains("DrillPrincipalArns"), "{id}: drills' invocations must not page");
    let targets = list(&rule["Properties"]["Targets"]);
    let page = targets.iter().find(|t| t["Arn"] == json!({"Ref": "PagingTopic"})).expect("the rule pages");
    assert!(page["InputTransformer"].is_object(), "{id}: shaped like a CloudWatch alarm notification for the pager");
    assert!(page["RetryPolicy"].is_object() && page["DeadLetterConfig"].is_object(), "{id}: retry policy and DLQ");
}
