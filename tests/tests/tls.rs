//! The functions over TLS: moto serves HTTPS (`scripts/moto_server.py --tls`, keep-alive, a certificate signed by
//! a CA generated at start) and a function trusts it only through its environment (`SSL_CERT_FILE`,
//! `SSL_CERT_DIR`: the SDK's default HTTPS client reads its roots with rustls-native-certs, which takes those
//! instead of the system's store). moto's record of connections and requests shows what priming
//! (`DR_PRIME_CONNECTIONS=true`) changes: the connections are opened during init and the first invocation's calls
//! go over them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use tests::dr_env::DrEnv;
use tests::moto::{self, Mark, TlsRecord};
use tests::runtime_api::{Function, Invocation};

/// The tests that read moto's record take turns: each counts the connections made while it runs (they are plain
/// tests that block on a runtime of their own, so that the turn is never held across an await).
static RECORD: Mutex<()> = Mutex::new(());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const ALARM: &str = "databricks-prod-workspace-unhealthy";

/// `aws::PRIME_DEADLINE`: how long priming may hold a cold start.
const PRIME_DEADLINE: Duration = Duration::from_secs(1);

fn alarm() -> Value {
    let path = format!("{}/../events/health-alarm/eventbridge-metric-alarm.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A seeded environment whose policy pages the alarm without failing over: the alarm then reads SSM and S3,
/// records in S3 and publishes to SNS, so the first invocation uses all three services.
async fn env() -> DrEnv {
    let env = DrEnv::seed(&moto::shared_tls().endpoint).await;
    env.put("policy", &json!({"mode": "notify-only", "failover_alarms": [ALARM]})).await;
    env
}

/// A cold start of health-alarm over TLS and its first invocation, with moto's record marks: before the start,
/// at the end of init, after the first invocation.
fn cold_start(env: &DrEnv, extra: &[(&str, &str)]) -> (Function, Invocation, [Mark; 3]) {
    let moto = moto::shared_tls();
    let mut vars = env.function_env();
    vars.extend(moto.tls.as_ref().unwrap().function_env());
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let m0 = moto.tls_record().mark();
    let mut f = Function::start("health-alarm", &vars);
    f.init_duration(Duration::from_secs(10)).unwrap_or_else(|| panic!("init did not end:\n{}", f.logs()));
    let m1 = moto.tls_record().mark();
    let answer = f.invoke(&alarm());
    let m2 = moto.tls_record().mark();
    (f, answer, [m0, m1, m2])
}

/// The services (`ssm`, `s3`, `sns`) whose calls in `window` all went over connections opened before `opened_by`.
/// The services of which a request in `window` went over a connection opened before it (`opened_by`): a primed
/// connection reused. (An alarm's first round trip reads its record, the lock and the alarm's pages side by side:
/// one of those S3 reads takes the primed connection, the others open their own.)
fn services_on_older_connections(record: &TlsRecord, window: (Mark, Mark), opened_by: usize) -> BTreeSet<String> {
    let (_, requests) = record.between(window.0, window.1);
    requests.iter().filter(|r| r.connection.is_some_and(|c| c < opened_by)).map(|r| r.service.clone()).collect()
}

#[test]
fn a_function_trusts_moto_s_certificate_through_ssl_cert_file_only() {
    let _turn = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let env = rt.block_on(env());

    let (f, answer, [_, m1, m2]) = cold_start(&env, &[]);
    let answer = match answer {
        Invocation::Response(v) => v,
        other => panic!("{other:?}\n{}", f.logs()),
    };
    assert_eq!(answer["outcome"], "noop", "{answer:#}");
    assert_eq!(answer["state"], "notified", "{answer:#}");
    assert_eq!(rt.block_on(env.pages()).len(), 1, "the page went out over TLS");
    let record = moto::shared_tls().tls_record();
    let (connections, requests) = record.between(m1, m2);
    assert!(!connections.is_empty() && connections.iter().all(|c| c.version.as_deref() == Some("TLSv1.3")), "{connections:?}");
    let services: BTreeSet<&str> = requests.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(services, BTreeSet::from(["s3", "sns", "ssm"]), "{requests:?}");
    drop(f);

    // The same function without the two variables: the system's store does not know the CA, the handshake fails.
    let env = rt.block_on(self::env());
    let moto = moto::shared_tls();
    let mut vars = env.function_env();
    vars.extend(moto.tls.as_ref().unwrap().function_env().into_iter().filter(|(k, _)| !k.starts_with("SSL_CERT")));
    vars.push(("DR_AWS_INITIAL_BACKOFF_MS".into(), "10".into()));
    let before = moto.tls_record().mark();
    let mut f = Function::start("health-alarm", &vars);
    match f.invoke(&alarm()) {
        Invocation::Error(e) => assert!(e["errorType"].as_str().unwrap_or_default().starts_with("Retryable."), "{e:#}"),
        other => panic!("expected a failed call without the CA, got {other:?}"),
    }
    let record = moto.tls_record();
    let (connections, requests) = record.between(before, record.mark());
    assert!(requests.is_empty(), "no request passed a handshake without the CA: {requests:?}");
    assert!(!connections.is_empty() && connections.iter().all(|c| c.error.is_some()), "{connections:?}");
}

#[test]
fn priming_opens_the_connections_in_init_and_the_first_invocation_uses_them() {
    let _turn = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let moto = moto::shared_tls();

    // Without priming: init opens nothing, the first invocation opens a connection per service (and more where
    // calls run side by side).
    let env_a = rt.block_on(env());
    let (f, answer, [m0, m1, m2]) = cold_start(&env_a, &[("DR_PRIME_CONNECTIONS", "false")]);
    assert!(matches!(answer, Invocation::Response(_)), "{answer:?}\n{}", f.logs());
    let record = moto.tls_record();
    assert_eq!(m1.connections - m0.connections, 0, "init opened connections without priming");
    let unprimed = m2.connections - m1.connections;
    assert!(unprimed >= 3, "one connection per service at least: {unprimed}");
    assert!(services_on_older_connections(&record, (m1, m2), m1.connections).is_empty());
    drop(f);

    // With priming: init opens one connection per service with its cheapest call, and the first invocation's
    // calls go over them.
    let env_b = rt.block_on(env());
    let (f, answer, [m0, m1, m2]) = cold_start(&env_b, &[("DR_PRIME_CONNECTIONS", "true")]);
    let answer = match answer {
        Invocation::Response(v) => v,
        other => panic!("{other:?}\n{}", f.logs()),
    };
    assert_eq!(answer["state"], "notified", "{answer:#}");
    let logs = f.logs();
    assert!(!logs.contains("priming failed") && !logs.contains("passed its deadline"), "{logs}");
    let record = moto.tls_record();
    let (connections, requests) = record.between(m0, m1);
    assert_eq!(connections.len(), 3, "one connection per service during init: {connections:?}");
    let mut primed: Vec<(String, String)> = requests.iter().map(|r| (r.service.clone(), r.operation.clone())).collect();
    primed.sort();
    let bucket_head = format!("HEAD /{}/", env_b.bucket);
    assert_eq!(
        primed,
        [("s3".into(), bucket_head), ("sns".into(), "GetTopicAttributes".into()), ("ssm".into(), "GetParameter".into())],
        "the cheapest call each role may make"
    );
    let warm = services_on_older_connections(&record, (m1, m2), m1.connections);
    assert!(
        warm.contains("ssm") && warm.contains("s3"),
        "the first invocation's SSM and S3 calls reused the primed connections: {warm:?}"
    );
    let (_, first) = record.between(m1, m2);
    // Paging and chat are published side by side: one goes over the primed connection, the other opens one.
    assert!(
        first.iter().any(|r| r.service == "sns" && r.connection.is_some_and(|c| c < m1.connections)),
        "an SNS call of the first invocation reused the primed connection: {first:?}"
    );
    let primed_count = m2.connections - m1.connections;
    assert!(primed_count < unprimed, "priming saved no handshake: {primed_count} against {unprimed} without it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priming_never_holds_init_past_its_deadline() {
    // An endpoint that accepts connections (the kernel does) and never answers: every priming call hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", silent.local_addr().unwrap());
    let env = env().await;
    let mut vars = env.function_env();
    vars.extend(moto::shared_tls().tls.as_ref().unwrap().function_env());
    vars.push(("AWS_ENDPOINT_URL".into(), endpoint));
    vars.push(("DR_PRIME_CONNECTIONS".into(), "true".into()));
    let f = Function::start("health-alarm", &vars);
    let init = f.init_duration(Duration::from_secs(10)).unwrap_or_else(|| panic!("init did not end:\n{}", f.logs()));
    assert!(
        init >= PRIME_DEADLINE && init < PRIME_DEADLINE + Duration::from_millis(1500),
        "init took {init:?} with a deadline of {PRIME_DEADLINE:?}"
    );
    assert!(f.init_error().is_none(), "{:?}", f.init_error());
    // The log line was written before the request for an invocation; its reader thread may still hold it.
    let logged = (0..100).any(|_| {
        let found = f.logs().contains("passed its deadline");
        if !found {
            std::thread::sleep(Duration::from_millis(20));
        }
        found
    });
    assert!(logged, "{}", f.logs());
}
