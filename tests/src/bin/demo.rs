//! The local end-to-end run (`scripts/demo`): moto, a seeded DR environment, and the real function
//! binaries driven through the Lambda Runtime API. Prints what it does and what on-call would see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::databricks::{DatabricksServer, sample_workspace};
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::{Function, Invocation};

fn step(title: &str) {
    println!("\n=== {title}");
}

fn fixture(path: &str) -> Value {
    let full = format!("{}/../events/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))).unwrap()
}

/// Prints the fields of an answer that matter, in one line each.
fn brief(inv: &Invocation, fields: &[&str]) -> Value {
    match inv {
        Invocation::Response(v) => {
            for f in fields {
                if !v[*f].is_null() {
                    println!("  {f:<14} {}", v[*f]);
                }
            }
            v.clone()
        }
        Invocation::Error(e) => {
            println!("  error {e}");
            Value::Null
        }
        Invocation::NoAnswer(why) => {
            println!("  no answer: {why}");
            Value::Null
        }
    }
}

/// What on-call's phone and chat show.
async fn show_messages(env: &DrEnv) {
    for p in env.pages().await {
        let m: Value = serde_json::from_str(p["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        let attrs = &p["MessageAttributes"];
        println!(
            "  PAGE  {} [severity={}, event_type={}]\n        {}",
            p["Subject"].as_str().unwrap_or_default(),
            attrs["severity"]["Value"].as_str().unwrap_or_default(),
            attrs["event_type"]["Value"].as_str().unwrap_or_default(),
            m["NewStateReason"].as_str().unwrap_or_default().chars().take(220).collect::<String>()
        );
        // The RPO that pages carry comes last in a long reason: shown whole.
        if let Some((_, rpo)) = m["NewStateReason"].as_str().unwrap_or_default().split_once(" RPO: ") {
            println!("        RPO: {}", rpo.split(" Approve with:").next().unwrap_or_default());
        }
    }
    for c in env.chats().await {
        let m: Value = serde_json::from_str(c["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        println!(
            "  CHAT  {} (thread {})",
            m["content"]["title"].as_str().unwrap_or_default(),
            m["metadata"]["threadId"].as_str().unwrap_or_default()
        );
    }
}

/// An SQS batch of S3 replication failure notifications, one per object, as S3 sends them.
fn storm_batch(objects: usize) -> Value {
    let records: Vec<Value> = (0..objects)
        .map(|i| {
            let body = json!({"Records": [{
                "eventVersion": "2.2", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2026-11-25T16:00:00.000Z", "eventName": "Replication:OperationFailedReplication",
                "userIdentity": {"principalId": "s3.amazonaws.com"},
                "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
                "responseElements": {"x-amz-request-id": "R", "x-amz-id-2": "I"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "delta-tables",
                       "bucket": {"name": "databricks-prod-data-use1", "ownerIdentity": {"principalId": "A"},
                                  "arn": "arn:aws:s3:::databricks-prod-data-use1"},
                       "object": {"key": format!("tables/sales/orders/part-{i:05}-c000.snappy.parquet"), "size": 1048576,
                                  "eTag": "e", "versionId": format!("v{i}"), "sequencer": "0055AED6DCD90281E5"}},
                "replicationEventData": {"replicationRuleId": "delta-tables",
                       "destinationBucket": "arn:aws:s3:::databricks-prod-data-usw2", "s3Operation": "OBJECT_PUT",
                       "requestTime": "2026-11-25T16:00:00.000Z", "failureReason": "AssumeRoleNotPermitted"}
            }]});
            json!({"messageId": format!("m-{i}"), "receiptHandle": "h", "body": body.to_string(), "attributes": {},
                   "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:dr-replication", "awsRegion": "us-west-2"})
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::main]
async fn main() {
    step("starting moto (local AWS) on 127.0.0.1");
    let moto = moto::shared();
    println!("  endpoint {}", moto.endpoint);

    step("seeding a DR environment: SSM parameters for two sites, control bucket, paging and chat topics");
    let env = DrEnv::seed_named(&moto.endpoint, "demo").await;
    env.put(
        "policy",
        &json!({"mode": "auto", "failover_alarms": ["databricks-prod-workspace-unhealthy"], "cooldown_minutes": 60}),
    )
    .await;
    println!(
        "  ssm prefix {}  bucket {}  policy: auto, failover alarm databricks-prod-workspace-unhealthy",
        env.prefix, env.bucket
    );

    step("starting two local Databricks workspaces (the documented REST API on 127.0.0.1; no live workspace)");
    let databricks = DatabricksServer::start(&["primary", "secondary"]).expect("local Databricks API");
    let (p, s) = (databricks.workspace("primary"), databricks.workspace("secondary"));
    // The primary's service principal authenticates by OAuth M2M, the secondary by a personal access token; both
    // secrets are SecureString parameters under {prefix}/secrets/, read at use. Both documents select the jobs
    // tagged dr=active-passive and the `bi` SQL warehouse for activation: the standby's are deployed paused and
    // stopped, and the promotion resumes and starts them (and pauses the former's). The secondary is reached as
    // `localhost`: the two workspaces' hosts differ, as the stable DNS name's targets.
    // The standby's site-local values for `dr sync`: zones and the landing bucket differ between the regions.
    let activation = json!({"activation": {"job_tag": "dr=active-passive", "warehouses": ["bi"]},
                            "sync": {"zone_ids": {"us-east-1a": "us-west-2a"},
                                     "storage_roots": {"s3://acme-primary-landing/": "s3://acme-secondary-landing/"}}});
    let (_, secondary_site) = tests::databricks::seed_sites(&env, p, s, &activation, Some("localhost")).await;
    let s_url = secondary_site["workspace_url"].as_str().unwrap_or_default().to_owned();
    // The standby lags behind: one job and one registered model were never deployed there.
    let mut standby = sample_workspace("secondary");
    standby["jobs"].as_array_mut().unwrap().retain(|j| j["settings"]["name"] != "hourly-report");
    standby["registered_models"] = json!([]);
    s.set_state(&standby);
    // Client redirection: dbx.example.internal, a CNAME to the active workspace's host, in a Route 53 zone.
    let (route53, zone) = tests::dns::zone(&moto.endpoint, "example.internal").await;
    tests::dns::upsert_cname(&route53, &zone, "dbx.example.internal", "127.0.0.1").await;
    env.put("redirection", &json!({"hosted_zone_id": zone, "record_name": "dbx.example.internal", "ttl": 60})).await;
    let dns = || tests::dns::cname(&route53, &zone, "dbx.example.internal");
    // What the activation changes, as each workspace says it.
    let show_workloads = |label: &str| {
        let (ps, ss) = (p.state(), s.state());
        let job = |st: &Value| {
            let jobs = st["jobs"].as_array().cloned().unwrap_or_default();
            let nightly = jobs.iter().find(|j| j["settings"]["name"] == "nightly-etl").cloned().unwrap_or_default();
            nightly["settings"]["schedule"]["pause_status"].as_str().unwrap_or("?").to_owned()
        };
        let bi = |st: &Value| {
            let all = st["warehouses"].as_array().cloned().unwrap_or_default();
            let w = all.iter().find(|w| w["name"] == "bi").cloned().unwrap_or_default();
            w["state"].as_str().unwrap_or("?").to_owned()
        };
        println!(
            "  {label}: nightly-etl primary {} / secondary {}; warehouse bi primary {} / secondary {}",
            job(&ps),
            job(&ss),
            bi(&ps),
            bi(&ss)
        );
        (job(&ss), bi(&ss))
    };
    println!("  primary {} (OAuth M2M)  secondary {} (PAT)", p.url, s_url);
    show_workloads("before");
    println!("  dbx.example.internal CNAME {}", dns().await);

    step("real Delta tables in the data buckets (written by delta-rs), replicated partially: one replica is behind");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&tests::dr_env::sdk_config(&moto.endpoint).await).force_path_style(true).build(),
    );
    let (data_primary, data_replica) = (format!("{}-delta-use1", env.environment), format!("{}-delta-usw2", env.environment));
    for b in [&data_primary, &data_replica] {
        let at = aws_sdk_s3::types::CreateBucketConfiguration::builder()
            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(tests::dr_env::REGION))
            .build();
        let _ = s3.create_bucket().bucket(b).create_bucket_configuration(at).send().await;
    }
    let tables = tests::delta::make_tables(&moto.endpoint, &data_primary, &data_replica);
    let location = |name: &str| {
        json!({"name": format!("sales.{name}"), "kind": "delta",
               "primary": format!("s3://{data_primary}/tables/{name}"), "replica": format!("s3://{data_replica}/tables/{name}")})
    };
    env.put("data-plane", &json!({"locations": [location("complete"), location("missing_commit")]})).await;
    let behind = &tables["missing_commit"];
    println!(
        "  sales.complete: replica current; sales.missing_commit: primary at version {}, replica consistent at {} (a commit never arrived)",
        behind["newest"], behind["consistent"]
    );

    step("starting manual-trigger and health-alarm behind a local Lambda Runtime API");
    let mut manual = Function::start("manual-trigger", &env.function_env());
    let mut health = Function::start("health-alarm", &env.function_env());
    println!("  AWS_LAMBDA_RUNTIME_API={} and {}", manual.runtime_api, health.runtime_api);

    step("manual-trigger {\"command\":\"status\"}");
    let status = brief(&manual.invoke(&json!({"command": "status"})), &["outcome", "active_site", "problems"]);
    let mut ok = status["active_site"] == "primary";

    step("manual-trigger {\"command\":\"snapshot\"} (scheduled every 6 h): both workspaces exported, compared");
    let snap = brief(&manual.invoke(&json!({"command": "snapshot"})), &["outcome", "snapshot_manifest_key", "files"]);
    for site in ["primary", "secondary"] {
        let kinds = snap["workspaces"][site]["kinds"].as_object().cloned().unwrap_or_default();
        let complete = kinds.values().filter(|k| k["status"] == "complete").count();
        let objects: u64 = kinds.values().filter_map(|k| k["count"].as_u64()).sum();
        println!(
            "  {site:<9} {complete}/{} types complete, {objects} objects, {} calls in {} ms",
            kinds.len(),
            snap["workspaces"][site]["requests"],
            snap["workspaces"][site]["elapsed_ms"]
        );
    }
    println!("  drift: {}", snap["workspace_drift"].as_str().unwrap_or("?"));
    ok &= snap["workspace_drift"].as_str().is_some_and(|d| d.contains("secondary is missing 1 job"));

    step("manual-trigger {\"command\":\"check\"}: readiness before anything happens, and the live DR matrix");
    let check = brief(&manual.invoke(&json!({"command": "check"})), &["outcome", "ready", "counts", "message"]);
    println!("  {}", check["dr_matrix"]["summary"].as_str().unwrap_or("?"));
    for row in check["dr_matrix"]["rows"].as_array().into_iter().flatten().filter(|r| r["status"] == "at_risk") {
        println!(
            "    at risk  {}: {}",
            row["component"].as_str().unwrap_or_default(),
            row["evidence"].as_str().unwrap_or_default()
        );
    }
    ok &= check["dr_matrix"]["rows"].as_array().is_some_and(|r| r.len() == 38);
    show_messages(&env).await;

    step("manual-trigger {\"command\":\"sync\"}: the plan that brings the standby in line (dr sync)");
    let plan = manual.invoke(&json!({"command": "sync"})).response();
    println!("  {}", plan["message"].as_str().unwrap_or("?"));
    let planned_jobs = plan["plan"]["kinds"]["jobs"].as_array().cloned().unwrap_or_default();
    for c in &planned_jobs {
        println!("    jobs: {} {}", c["action"].as_str().unwrap_or("?"), c["name"].as_str().unwrap_or("?"));
    }
    ok &= planned_jobs
        .iter()
        .any(|c| c["action"] == "create" && c["name"].as_str().is_some_and(|n| n.starts_with("hourly-report")));

    step(
        "manual-trigger {\"command\":\"sync\",\"apply\":true,\"confirm\":\"secondary\"} (dr sync --apply): written to the standby",
    );
    let applied = manual
        .invoke(&json!({"command": "sync", "apply": true, "confirm": "secondary", "requested_by": "dr-team@example.com"}))
        .response();
    println!("  {}", applied["message"].as_str().unwrap_or("?"));
    ok &= applied["apply"]["outcome"] == "complete";
    let deployed = s.state()["jobs"].as_array().cloned().unwrap_or_default();
    let hourly = deployed.iter().find(|j| j["settings"]["name"] == "hourly-report").cloned().unwrap_or_default();
    println!(
        "  standby's hourly-report: created, schedule {}, tags {}",
        hourly["settings"]["schedule"]["pause_status"].as_str().unwrap_or("?"),
        hourly["settings"]["tags"]
    );

    step("manual-trigger {\"command\":\"snapshot\"} again: no drift left in the synced kinds");
    let again = brief(&manual.invoke(&json!({"command": "snapshot"})), &["outcome"]);
    println!("  drift: {}", again["workspace_drift"].as_str().unwrap_or("?"));
    // Between the sites, no job is missing or differs any more (the standby gained it: "+1 job" over time).
    ok &= again["workspace_drift"].as_str().is_some_and(|d| !d.contains("missing 1 job") && !d.contains("job differ"));

    step("manual-trigger {\"command\":\"drill\"}: the failover rehearsed on a copy, cleaned up, reported");
    let drill = brief(
        &manual.invoke(&json!({"command": "drill", "requested_by": "dr-team@example.com", "reason": "quarterly drill"})),
        &["outcome", "execution_id", "timings_ms", "report_key", "cleanup"],
    );
    ok &= drill["outcome"] == "completed" && drill["cleanup"]["verified"] == true;
    show_messages(&env).await;
    println!("  live active still: {}", env.get("active").await["site"]);

    step("the primary workspace's health alarm fires (EventBridge 'CloudWatch Alarm State Change')");
    let fired = brief(
        &health.invoke(&fixture("health-alarm/eventbridge-metric-alarm.json")),
        &["outcome", "active_site", "execution_id", "timings_ms", "report_key"],
    );
    ok &= fired["outcome"] == "completed";
    println!("  what on-call receives (the started page carries the workload RPO, the worst Delta table's):");
    let pages = env.pages().await;
    ok &= pages.iter().any(|p| p["Message"].as_str().is_some_and(|m| m.contains("worst table sales.missing_commit")));
    for p in pages {
        let m: Value = serde_json::from_str(p["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        println!("  PAGE  {}", p["Subject"].as_str().unwrap_or_default());
        if let Some((_, rpo)) = m["NewStateReason"].as_str().unwrap_or_default().split_once(" RPO: ") {
            println!("        RPO: {rpo}");
        }
    }
    show_messages(&env).await;

    println!("  the secondary's workloads activated, the former's paused, the stable name moved:");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (job, bi) = show_workloads("after the failover");
    let moved = dns().await;
    println!("  dbx.example.internal CNAME {moved}");
    ok &= job == "UNPAUSED" && (bi == "STARTING" || bi == "RUNNING") && moved.starts_with("localhost");

    step("the same state change arrives again through the alarm's SNS notification");
    let again = brief(&health.invoke(&fixture("health-alarm/sns-metric-alarm.json")), &["outcome", "execution_id"]);
    ok &= again["outcome"] == "already_completed";

    step("status after the failover");
    let after = brief(&manual.invoke(&json!({"command": "status"})), &["active_site", "recent_executions"]);
    ok &= after["active_site"] == "secondary";
    let active = env.get("active").await;
    println!("  {}/active = {}", env.prefix, active);

    step("on-call fails back once the primary is healthy (never automatic)");
    let back = brief(
        &manual.invoke(&json!({"command": "failback", "target": "primary", "confirm": "primary", "reason": "primary recovered",
                                "requested_by": "oncall@example.com", "client_token": "demo-back"})),
        &["outcome", "active_site", "execution_id", "timings_ms"],
    );
    ok &= back["active_site"] == "primary";
    show_messages(&env).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (job, _) = show_workloads("after the failback (what the failover changed, reversed)");
    let back_dns = dns().await;
    println!("  dbx.example.internal CNAME {back_dns}");
    ok &= job == "PAUSED" && back_dns.starts_with("127.0.0.1");

    step("a replication storm: the replication role loses its trust policy; 400 objects fail to replicate");
    let mut replication = Function::start("replication-failure", &env.function_env());
    let storm = storm_batch(400);
    let handled = brief(&replication.invoke(&storm), &["batchItemFailures"]);
    ok &= handled["batchItemFailures"] == json!([]);
    println!("  what on-call receives for 400 failed objects:");
    show_messages(&env).await;
    let manifests = env.keys("replication/manifests/").await;
    println!("  re-drive manifests (S3 Batch Operations CSV): {manifests:?}");
    println!("  incidents: {:?}", env.keys("replication/incidents/").await);
    let after = brief(&manual.invoke(&json!({"command": "check"})), &["ready", "counts"]);
    ok &= after["counts"]["warning"].as_u64().unwrap_or(0) >= 1;

    step("a typo is rejected with what is expected, and nothing changes");
    brief(
        &manual.invoke(&json!({"command": "failover", "target": "secondary", "confrim": "secondary"})),
        &["outcome", "message"],
    );

    step("dr status: what on-call reads at 3 a.m. (the break-glass CLI: the same command, a summary for people)");
    let status = std::process::Command::new(tests::runtime_api::bin_dir().join("dr"))
        .env_clear()
        .envs(env.function_env())
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    for line in text.lines() {
        println!("  {line}");
    }
    ok &= status.status.success() && text.contains("active site   PRIMARY") && text.contains("RPO           AT RISK");

    step(if ok {
        "demo finished: exports and drift, the DR matrix, sync of the standby (plan, apply, no drift), a drill, an automatic failover on an alarm with the workload RPO \
         and the standby's workloads activated, idempotent redelivery, failback, a replication storm as one page"
    } else {
        "demo FAILED"
    });
    if !ok {
        eprintln!("manual-trigger logs:\n{}\nhealth-alarm logs:\n{}", manual.logs(), health.logs());
        std::process::exit(1);
    }
}
