//! A break-glass `dr` whose clock is skewed (issue 23): the built binary run under libfaketime (Debian's
//! `faketime` package; scripts/test installs it), its clock 10 minutes ahead of or behind moto's, which stands
//! for S3's. The failover lock's leases are judged by the store's time (S3's `Date`), so neither skew lets it
//! take a lock that is held, nor lets anyone else take its own lock while it works.
//!
//! Without libfaketime these tests fail and say so: the skew cannot be made, so nothing would be tested.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tests::databricks::SitePair;
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::bin_dir;

/// Where Debian's `libfaketime` puts the preload library (the multi-threaded one: `dr` runs a Tokio pool), or
/// `DR_FAKETIME_LIB`.
fn faketime_lib() -> PathBuf {
    let lib = std::env::var_os("DR_FAKETIME_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"));
    assert!(
        lib.exists(),
        "cannot run: {} is missing, so `dr` cannot be given a skewed clock. Install Debian's `faketime` package \
         (scripts/test does: apt-get install faketime) or point DR_FAKETIME_LIB at libfaketimeMT.so.1",
        lib.display()
    );
    lib
}

fn dr_bin() -> PathBuf {
    let bin = bin_dir().join("dr");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` (scripts/test does)", bin.display());
    bin
}

/// `dr args` with the function's environment, its wall clock moved by `skew` (libfaketime's `+10m`, `-10m`;
/// `None`: the real clock). The monotonic clock is left alone: only the wall clock is skewed, as on a laptop.
fn dr_command(env: &DrEnv, skew: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(dr_bin());
    c.env_clear()
        .envs(env.function_env())
        .env("USER", "oncall")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DR_DATABRICKS_BACKOFF_MS", "20")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(skew) = skew {
        c.env("LD_PRELOAD", faketime_lib()).env("FAKETIME", skew).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    c
}

fn answer(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn move_args<'a>(command: &'a str, to: &'a str, token: &'a str) -> Vec<&'a str> {
    vec!["--json", command, "--to", to, "--reason", "clock skew test", "--token", token, "--confirm", to]
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The time an RFC 3339 field of a JSON document names.
fn at(v: &Value) -> time::OffsetDateTime {
    domain::primitives::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// The failover lock as a Lambda (its clock the store's) writes it while its attempt runs.
fn lambda_lock(execution: &str, lease: time::Duration) -> Value {
    json!({"execution_id": execution, "attempt_id": "lambda-attempt", "state": "running",
           "acquired_at": domain::primitives::rfc3339(now()),
           "lease_expires_at": domain::primitives::rfc3339(now() + lease),
           "holder": "manual-trigger (a Lambda, its clock the store's)"})
}

async fn put_lock(env: &DrEnv, lock: &Value) {
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(domain::layout::FAILOVER_LOCK)
        .body(lock.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
}

async fn lock_doc(env: &DrEnv) -> Option<Value> {
    env.object(domain::layout::FAILOVER_LOCK).await.map(|b| serde_json::from_slice(&b).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dr_ten_minutes_ahead_does_not_take_over_the_lock_a_lambda_holds() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    // A failover by the Lambda holds the lock, its lease 2 minutes by the store's clock.
    let held = lambda_lock("failover-by-lambda", time::Duration::minutes(2));
    put_lock(&env, &held).await;
    let active_before = env.get("active").await;

    let out = dr_command(&env, Some("+10m"), &move_args("failover", "secondary", "ahead")).output().unwrap();
    let a = answer(&out);
    // By its own clock the lease ended 8 minutes ago; by the store's it has 2 minutes left.
    assert_eq!(a["outcome"], "in_progress", "{a:#}");
    assert_eq!(a["in_flight"]["execution_id"], "failover-by-lambda", "{a:#}");
    assert_eq!(lock_doc(&env).await, Some(held), "the Lambda's lock untouched");
    assert_eq!(env.get("active").await, active_before, "nothing promoted");
    assert!(env.object("executions/failover-ahead.json").await.is_none_or(|b| {
        let rec: Value = serde_json::from_slice(&b).unwrap();
        rec["promoted_version"].is_null()
    }));

    // Nor does a laptop 10 minutes behind (by its clock the lease has 12 minutes left; by the store's, 2).
    let out = dr_command(&env, Some("-10m"), &move_args("failover", "secondary", "behind")).output().unwrap();
    let a = answer(&out);
    assert_eq!((&a["outcome"], &a["in_flight"]["execution_id"]), (&json!("in_progress"), &json!("failover-by-lambda")));

    // `unlock` from the laptop ahead does not break it as expired either.
    let out = dr_command(&env, Some("+10m"), &["--json", "unlock", "failover-by-lambda", "--confirm", "failover-by-lambda"])
        .output()
        .unwrap();
    let a = answer(&out);
    assert_eq!(a["outcome"], "in_progress", "{a:#}");
    assert!(lock_doc(&env).await.is_some(), "the lock is still there");
}

/// A `dr` run in the background, killed if the test ends before it does (a failed assert must not leave it hung).
struct Background(Option<std::process::Child>);

impl Background {
    fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first request the secondary workspace received on `path`, waiting for it (at most a minute: the run
/// under test is hung on it, not slow).
fn wait_for_request(pair: &SitePair, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pair.secondary().requests().iter().any(|r| r.path.starts_with(path)) {
        assert!(Instant::now() < deadline, "no request on {path} reached the secondary");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failback_never_takes_over_the_lock_of_a_dr_ten_minutes_behind_while_it_fails_over() {
    let pair = SitePair::start(&json!({"activation": {"job_tag": "dr=active-passive", "warehouses": ["bi"]}}), None).await;
    let env = &pair.env;
    // The failover's first activation call on the secondary hangs until the test lets it go: the `dr` is then past
    // its promotion, holding the lock, in the middle of its work.
    let jobs = "/api/2.2/jobs/list";
    pair.secondary().set_faults(&json!([{"path_prefix": jobs, "mode": "hang", "times": 1}]));
    let laptop = Background(Some(dr_command(env, Some("-10m"), &move_args("failover", "secondary", "behind")).spawn().unwrap()));
    wait_for_request(&pair, jobs);
    let lock = lock_doc(env).await.expect("the failover holds the lock");
    assert_eq!(lock["execution_id"], "failover-behind", "{lock:#}");

    // A failback by a correct clock (a Lambda, or a colleague's `dr`) meanwhile: the lock is held. (It used to
    // find the lease 8 minutes past, take the lock over and fail back under the failover still at work.)
    let back = dr_command(env, None, &move_args("failback", "primary", "back")).output().unwrap();
    let b = answer(&back);
    assert_eq!(b["outcome"], "in_progress", "{b:#}");
    assert_eq!(b["in_flight"]["execution_id"], "failover-behind", "{b:#}");
    assert_eq!(env.get("active").await["execution_id"], "failover-behind", "the failback promoted nothing");
    // The lease the failover wrote is the store's time plus the lease (2 minutes), not its own clock's.
    assert!(at(&lock["lease_expires_at"]) > now() + time::Duration::seconds(60), "{lock:#}");

    pair.secondary().clear_faults();
    let out = laptop.output();
    let a = answer(&out);
    assert_eq!(a["outcome"], "completed", "{a:#}");
    // The skew did reach the binary: the record it wrote is dated by its clock, 10 minutes behind.
    let rec = env.json("executions/failover-behind.json").await;
    assert!(at(&rec["created_at"]) < now() - time::Duration::minutes(9), "{}", rec["created_at"]);
    assert_eq!(env.get("active").await["execution_id"], "failover-behind");
    assert!(lock_doc(env).await.is_none(), "released at the end");
}
