//! Benchmark: the first AWS calls after a cold start over TLS, with and without priming the connections during
//! init (`DR_PRIME_CONNECTIONS=true`, `aws::AwsClients::prime`), so that the template's choice is measured.
//!
//! moto serves HTTPS with keep-alive (`scripts/moto_server.py --tls`: a certificate for 127.0.0.1 signed by a CA
//! generated at start); each function trusts it through the SDK's own configuration, `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` in its environment, read by rustls-native-certs (nothing in the product knows). moto records
//! every TLS connection (one handshake each) and every request with its connection, which gives:
//!
//! - per function, on its representative event as the first invocation of a cold sandbox: the init time, the
//!   first invocation's handler time, their sum (what an on-demand cold start's caller waits), and the TLS
//!   handshakes of each phase;
//! - the failover as the first invocation of a cold `manual-trigger`, and the failback after it in the same
//!   sandbox (warm: the reference): the handler time, decide..verify, the calls and handshakes, and the sequential
//!   round trips to the verified promotion.
//!
//! Each is measured twice: on loopback, and with a simulated network round trip (`BENCH_TLS_RTT_MS`, default
//! 10): moto holds every answer that long and every new connection twice as long (its TCP and TLS 1.3
//! handshakes). The round trips are counted only then, from moto's record: the heaviest chain of calls (one round
//! trip each) and new connections (two), each begun after the one before it ended, that ends at the verify
//! step's `LabelParameterVersion`. On loopback the answers are too quick against moto's serialized handling for
//! the times to tell calls sent side by side from calls sent one after the other.
//!
//! `scripts/bench` runs it with `DR_FUNCTION_BIN_DIR=target/release`; `BENCH_RUNS` (default 10) cold starts per
//! row, primed and unprimed alternating.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::dr_env::DrEnv;
use tests::moto::{self, Mark, Moto, TlsRecord, TlsRequest};
use tests::runtime_api::{Function, bin_dir};
use tests::{fixture, median};

const MODES: [(&str, &str); 2] = [("unprimed", "false"), ("primed", "true")];

/// A seeded environment and the variables of a function on it, over TLS.
/// `notify_only`: the policy of the startup bench, so the alarm fixture pages without failing over; else the seeded
/// policy (approval: a human's failover runs).
async fn environment(moto: &Moto, prime: &str, notify_only: bool) -> (DrEnv, Vec<(String, String)>) {
    let env = DrEnv::seed(&moto.endpoint).await;
    if notify_only {
        env.put("policy", &json!({"mode": "notify-only", "failover_alarms": ["databricks-prod-workspace-unhealthy"]})).await;
    }
    let mut vars = env.function_env();
    vars.extend(moto.tls.as_ref().expect("moto with TLS").function_env());
    vars.push(("DR_PRIME_CONNECTIONS".into(), prime.into()));
    // The production log level: the bench measures what Lambda runs.
    vars.push(("AWS_LAMBDA_LOG_LEVEL".into(), "info".into()));
    (env, vars)
}

/// One cold start and its first invocation.
struct Cold {
    init_ms: f64,
    first_ms: f64,
    init_handshakes: usize,
    first_handshakes: usize,
    first_calls: usize,
    answer: Value,
    /// The record's marks: before the start, at the end of init, after the first invocation.
    marks: [Mark; 3],
    f: Function,
}

fn cold(moto: &Moto, name: &str, vars: &[(String, String)], event: &Value) -> Cold {
    let m0 = moto.tls_record().mark();
    let mut f = Function::start(name, vars);
    let init = f.init_duration(Duration::from_secs(10)).expect("the function asked for an invocation");
    let m1 = moto.tls_record().mark();
    let t = Instant::now();
    let answer = f.invoke(event).response();
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    let m2 = moto.tls_record().mark();
    assert!(
        !f.logs().contains("priming failed") && !f.logs().contains("passed its deadline"),
        "{name}: priming failed:\n{}",
        f.logs()
    );
    Cold {
        init_ms: init.as_secs_f64() * 1000.0,
        first_ms,
        init_handshakes: m1.connections - m0.connections,
        first_handshakes: m2.connections - m1.connections,
        first_calls: m2.requests - m1.requests,
        answer,
        marks: [m0, m1, m2],
        f,
    }
}

/// One step of a chain: an AWS call (one round trip) or the opening of a connection before a call (the TCP
/// handshake and the TLS 1.3 handshake: two round trips; moto sees the connection from its accept to the end of
/// the TLS handshake).
#[derive(Clone, Copy)]
struct Node {
    start: f64,
    end: f64,
    call: bool,
}

/// The round trips up to and including `last` (a request of the window): the heaviest chain of nodes, each
/// starting after the one before it ended, a call weighing one round trip and a new connection two. Returns the
/// chain's (round trips, AWS calls, new connections).
fn critical_path(record: &TlsRecord, from: Mark, to: Mark, last: &TlsRequest) -> (u32, u32, u32) {
    let (_, requests) = record.between(from, to);
    let mut nodes: Vec<Node> = requests.iter().map(|r| Node { start: r.start, end: r.end, call: true }).collect();
    // The connections opened in the window, each before its first request.
    for conn in &record.connections[from.connections..to.connections] {
        if let Some(end) = conn.handshake_end {
            nodes.push(Node { start: conn.accepted, end, call: false });
        }
    }
    nodes.sort_by(|a, b| a.end.total_cmp(&b.end));
    // best[i]: (round trips, calls, connections) of the heaviest chain ending at node i.
    let mut best: Vec<(u32, u32, u32)> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let (rt, calls, conns) = (0..i).filter(|&j| nodes[j].end <= n.start).map(|j| best[j]).max().unwrap_or((0, 0, 0));
        best.push(if n.call { (rt + 1, calls + 1, conns) } else { (rt + 2, calls, conns + 1) });
    }
    let at = nodes.iter().position(|n| n.call && n.start == last.start && n.end == last.end).expect("the last call is a node");
    best[at]
}

fn failover(target: &str, token: &str) -> Value {
    let kind = if target == "secondary" { "failover" } else { "failback" };
    json!({"command": kind, "target": target, "reason": "bench", "requested_by": "bench", "confirm": target, "client_token": token})
}

fn decide_to_verify(answer: &Value) -> f64 {
    answer["timings_ms"]
        .as_object()
        .map(|t| {
            t.iter()
                .filter(|(step, _)| ["decide", "lock", "fence", "snapshot", "promote", "verify"].contains(&step.as_str()))
                .map(|(_, ms)| ms.as_f64().unwrap_or(0.0))
                .sum()
        })
        .unwrap_or(0.0)
}

#[derive(Default)]
struct FailoverRow {
    init: Vec<f64>,
    handler: Vec<f64>,
    rto: Vec<f64>,
    calls: Vec<f64>,
    handshakes: Vec<f64>,
    /// (round trips, calls, new connections) of each run's chain to the verified promotion.
    paths: Vec<(u32, u32, u32)>,
}

impl FailoverRow {
    fn push(&mut self, record: &TlsRecord, from: Mark, to: Mark, init_ms: Option<f64>, handler_ms: f64, answer: &Value) {
        assert_eq!(answer["outcome"], "completed", "{answer}");
        let (_, requests) = record.between(from, to);
        let verify = requests.iter().rev().find(|r| r.operation == "LabelParameterVersion").expect("the verify step labels");
        let path = critical_path(record, from, to, verify);
        self.init.extend(init_ms);
        self.handler.push(handler_ms);
        self.rto.push(decide_to_verify(answer));
        self.calls.push(requests.len() as f64);
        self.handshakes.push((to.connections - from.connections) as f64);
        self.paths.push(path);
    }

    fn print(&self, what: &str, rtt: u64) {
        let m = |v: &Vec<f64>| median(v.clone());
        let init = if self.init.is_empty() { "-".to_owned() } else { format!("{:.1}", m(&self.init)) };
        // The median chain, whole: its calls and connections add up to its round trips.
        let mut paths = self.paths.clone();
        paths.sort();
        let paths = match paths.get(paths.len() / 2) {
            Some((rt, calls, conns)) if rtt > 0 => format!("{rt} | {calls} | {conns}"),
            _ => "- | - | -".to_owned(),
        };
        println!(
            "| {what} | {rtt} | {init} | {:.1} | {:.1} | {:.0} | {:.0} | {paths} |",
            m(&self.handler),
            m(&self.rto),
            m(&self.calls),
            m(&self.handshakes),
        );
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let rtt_ms: u64 = std::env::var("BENCH_TLS_RTT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let moto = moto::shared_tls();
    let cases: [(&str, &str, Value); 3] = [
        ("manual-trigger", "status", json!({"command": "status"})),
        ("health-alarm", "notify-only alarm", fixture("health-alarm", "eventbridge-metric-alarm.json")),
        ("replication-failure", "replication fixture", fixture("replication-failure", "sqs-direct-failed-replication.json")),
    ];
    let rtts = [0, rtt_ms];

    println!(
        "first AWS calls after a cold start, against moto over TLS (keep-alive); binaries: {}; {runs} cold starts per row, medians",
        bin_dir().display()
    );
    println!("added RTT: none (moto on loopback), or a simulated round trip on every answer and two on every new connection");
    println!(
        "| function | event | added RTT ms | priming | init ms | first invocation ms | init + first ms | TLS handshakes in init | in the first invocation | AWS calls in it |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for rtt in rtts {
        moto.set_tls_round_trip(Duration::from_millis(rtt));
        for (name, what, event) in &cases {
            let mut rows: Vec<[Vec<f64>; 5]> = vec![Default::default(), Default::default()];
            for _ in 0..runs {
                for (m, (_, prime)) in MODES.iter().enumerate() {
                    let (_env, vars) = environment(moto, prime, true).await;
                    let c = cold(moto, name, &vars, event);
                    let row = &mut rows[m];
                    row[0].push(c.init_ms);
                    row[1].push(c.first_ms);
                    row[2].push(c.init_handshakes as f64);
                    row[3].push(c.first_handshakes as f64);
                    row[4].push(c.first_calls as f64);
                }
            }
            for (m, (mode, _)) in MODES.iter().enumerate() {
                let [init, first, init_hs, first_hs, calls] = &rows[m];
                let sum: Vec<f64> = init.iter().zip(first).map(|(a, b)| a + b).collect();
                println!(
                    "| {name} | {what} | {rtt} | {mode} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
                    median(init.clone()),
                    median(first.clone()),
                    median(sum),
                    median(init_hs.clone()),
                    median(first_hs.clone()),
                    median(calls.clone()),
                );
            }
        }
    }

    // The failover as the first invocation of a cold manual-trigger; then, warm, the failback (the reference:
    // the connections of the failover are open).
    println!();
    println!(
        "failover over TLS: the first invocation of a cold manual-trigger, and the failback after it (warm); {runs} runs per row, medians"
    );
    println!(
        "round trips: the heaviest chain of AWS calls (one round trip each) and new connections (TCP + TLS 1.3 handshakes: two), each \
         begun after the one before it ended, ending at the verify step; counted with the simulated round trip only (on loopback, \
         moto's serialized handling makes calls sent side by side look sequential)"
    );
    println!(
        "| failover | added RTT ms | init ms | handler ms | decide..verify ms | AWS calls | TLS handshakes | sequential round trips to verified promotion | AWS calls on that path | new connections on it (2 round trips each) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for rtt in rtts {
        moto.set_tls_round_trip(Duration::from_millis(rtt));
        let mut cold_rows = [FailoverRow::default(), FailoverRow::default()];
        let mut warm = FailoverRow::default();
        for i in 0..runs {
            for (m, (_, prime)) in MODES.iter().enumerate() {
                let (_env, vars) = environment(moto, prime, false).await;
                let mut c = cold(moto, "manual-trigger", &vars, &failover("secondary", &format!("tls{rtt}-{i}-{m}")));
                let record = moto.tls_record();
                cold_rows[m].push(&record, c.marks[1], c.marks[2], Some(c.init_ms), c.first_ms, &c.answer);
                let t = Instant::now();
                let back = c.f.invoke(&failover("primary", &format!("tls{rtt}-{i}-{m}-back"))).response();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let record = moto.tls_record();
                warm.push(&record, c.marks[2], record.mark(), None, ms, &back);
            }
        }
        for (m, (mode, _)) in MODES.iter().enumerate() {
            cold_rows[m].print(&format!("cold, {mode}"), rtt);
        }
        warm.print("warm (the failback after it)", rtt);
    }
    moto.set_tls_round_trip(Duration::ZERO);
}
