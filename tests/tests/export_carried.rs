//! A snapshot's Databricks export carried over invocations, end to end: `manual-trigger` (the built binary, through
//! the Runtime API) with an export queue (moto's SQS) and a budget too small for the whole export at the local
//! workspaces' latency; the test plays Lambda's SQS event source mapping (each continuation delivered as an SQS
//! event to the function, its message deleted unless the answer names it in `batchItemFailures`). The export ends
//! complete and equal to the one-invocation export of the same workspaces, in the same files and manifest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::collections::BTreeSet;
use tests::databricks::SitePair;
use tests::runtime_api::Function;

/// Every continuation on `queue`, delivered to `f` until none is left; returns how many were delivered.
async fn deliver_all(pair: &SitePair, f: &mut Function, queue: &str) -> usize {
    let mut delivered = 0;
    loop {
        let r =
            pair.env.sqs.receive_message().queue_url(queue).max_number_of_messages(10).wait_time_seconds(0).send().await.unwrap();
        let messages = r.messages.unwrap_or_default();
        if messages.is_empty() {
            return delivered;
        }
        for m in messages {
            let id = m.message_id.clone().unwrap_or_default();
            let event = json!({"Records": [{
                "messageId": id, "receiptHandle": m.receipt_handle, "body": m.body, "attributes": {},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:export-continuations", "awsRegion": "us-west-2"
            }]});
            let answer = f.invoke_with_timeout(&event, std::time::Duration::from_secs(120)).response();
            assert_eq!(answer, json!({"batchItemFailures": []}), "{}", f.logs());
            pair.env.sqs.delete_message().queue_url(queue).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
            delivered += 1;
            assert!(delivered < 200, "the continuations do not end");
        }
    }
}

/// The objects of a snapshot's kind file, each as its JSON text, sorted; and its status and count.
async fn kind_file(pair: &SitePair, folder: &str, site: &str, kind: &str) -> (Value, Value, Vec<String>) {
    let v = pair.env.json(&format!("{folder}/databricks/{site}/{kind}.json")).await;
    let mut objects: Vec<String> =
        v["objects"].as_array().unwrap_or_else(|| panic!("{folder} {site} {kind}: {v}")).iter().map(Value::to_string).collect();
    objects.sort();
    (v["status"].clone(), v["count"].clone(), objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_too_big_for_one_invocation_is_carried_over_several_through_sqs_and_ends_equal_to_one() {
    let pair = SitePair::start(&json!({}), None).await;
    // The one-invocation export of the same workspaces: the reference.
    let mut one = pair.function(&[]);
    let r = one.invoke(&json!({"command": "snapshot"})).response();
    let reference = r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json").to_owned();
    drop(one);

    let queue = pair.env.sqs.create_queue().queue_name(format!("{}-export", pair.env.environment)).send().await.unwrap();
    let queue = queue.queue_url.unwrap();
    // 60 ms a call and one second per invocation: the core of a site fits one invocation, not the whole export.
    for w in [pair.primary(), pair.secondary()] {
        w.set_latency(std::time::Duration::from_millis(60));
    }
    let mut f =
        pair.function(&[("DR_EXPORT_QUEUE_URL", &queue), ("DR_EXPORT_DEADLINE_SECONDS", "1"), ("DR_EXPORT_PART_SIZE", "3")]);
    // Not a second after the reference: a snapshot's folder is named by the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = f.invoke_with_timeout(&json!({"command": "snapshot"}), std::time::Duration::from_secs(120)).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert!(r.get("snapshot_manifest_key").is_none(), "one invocation cannot hold it: {r:#}");
    assert!(r["parts"]["pending"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["message"].as_str().unwrap().contains("carried over invocations"), "{r:#}");
    let run = r["export_run"].as_str().unwrap().to_owned();
    // While it runs, status shows how far it is.
    let status = f.invoke(&json!({"command": "status"})).response();
    let progress = &status["workspaces"]["exports"]["primary"];
    assert_eq!(progress["state"], "running", "{progress:#}");
    assert!(progress["parts"]["pending"].as_u64().unwrap() + progress["parts"]["done"].as_u64().unwrap() > 0, "{progress:#}");

    let delivered = deliver_all(&pair, &mut f, &queue).await;
    assert!(delivered >= 1);
    let state = pair.env.json(&run).await;
    let manifest_key = state["manifest_key"].as_str().unwrap_or_else(|| panic!("not merged: {state:#}\n{}", f.logs()));
    let invocations = state["invocations"].as_u64().unwrap();
    assert!(invocations >= 2, "{state:#}");
    let folder = manifest_key.trim_end_matches("/manifest.json");
    assert_ne!(folder, reference);

    // The same files as one invocation writes, in the manifest with their digests, and the same objects.
    let names = |m: &Value| -> BTreeSet<String> {
        m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
    };
    let (m1, m2) = (pair.env.json(&format!("{reference}/manifest.json")).await, pair.env.json(manifest_key).await);
    assert_eq!(names(&m1), names(&m2));
    for entry in m2["files"].as_array().unwrap() {
        let body = pair.env.object(entry["key"].as_str().unwrap()).await.unwrap_or_else(|| panic!("{entry} missing"));
        assert_eq!(body.len() as u64, entry["bytes"].as_u64().unwrap(), "{entry}");
    }
    let kinds: Vec<String> = names(&m2)
        .iter()
        .filter_map(|n| n.strip_prefix("databricks/primary/").and_then(|k| k.strip_suffix(".json")).map(str::to_owned))
        .collect();
    assert_eq!(kinds.len(), 21);
    for site in ["primary", "secondary"] {
        for kind in &kinds {
            let (s1, c1, o1) = kind_file(&pair, &reference, site, kind).await;
            let (s2, c2, o2) = kind_file(&pair, folder, site, kind).await;
            assert_eq!(s2, "complete", "{site} {kind}");
            assert_eq!((s1, c1), (s2, c2), "{site} {kind}");
            assert_eq!(o1, o2, "{site} {kind}: the carried export differs from the one-invocation one");
        }
    }
    // The pointers name the carried snapshot; its drift over time is none (the workspaces did not change).
    let pointer = pair.env.json("databricks/latest-primary.json").await;
    assert_eq!(pointer["snapshot_folder"], folder);
    let drift = pair.env.json("databricks/drift.json").await;
    assert_eq!(drift["snapshot_folder"], folder);
    assert!(
        drift["sentence"].as_str().unwrap().contains("primary no change since the last snapshot")
            || drift["over_time"]["primary"]["kinds"].as_array().unwrap().iter().all(|k| k["added"]
                .as_array()
                .unwrap()
                .is_empty()
                && k["removed"].as_array().unwrap().is_empty()
                && k["changed"].as_array().unwrap().is_empty()),
        "{drift:#}"
    );
    // No part left behind; status: finished, every part done, the invocations counted.
    assert!(pair.env.keys(&format!("{folder}/databricks/parts/")).await.is_empty());
    let status = f.invoke(&json!({"command": "status"})).response();
    let progress = &status["workspaces"]["exports"]["primary"];
    assert_eq!(progress["state"], "finished", "{progress:#}");
    assert_eq!(progress["invocations"], invocations);
    assert_eq!(progress["parts"]["pending"], 0);
    assert_eq!(progress["kinds"]["complete"], 21, "{progress:#}");
    // A duplicate continuation after the end does nothing.
    pair.env
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(json!({"export_run": run, "part": "primary/core"}).to_string())
        .send()
        .await
        .unwrap();
    deliver_all(&pair, &mut f, &queue).await;
    assert_eq!(pair.env.json(&run).await["invocations"], invocations);
    assert_eq!(pair.env.json(manifest_key).await, m2);
}
