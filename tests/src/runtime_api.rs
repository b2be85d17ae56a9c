//! A Lambda Runtime API server (the `2018-06-01` interface) that runs a built function binary the way the
//! Lambda service does: the binary polls `/runtime/invocation/next`, answers on `/response` or `/error`.
//!
//! One [`Function`] is one sandbox: one process, invocations one at a time. Concurrency is several
//! `Function`s, as Lambda scales out with several sandboxes.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What one invocation returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The function's response document.
    Response(Value),
    /// The function reported an error (`errorType`, `errorMessage`).
    Error(Value),
    /// The process exited or stopped answering before it responded.
    NoAnswer(String),
}

impl Invocation {
    /// The response, or a panic with what happened instead (for tests).
    pub fn response(self) -> Value {
        match self {
            Invocation::Response(v) => v,
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

struct Pending {
    id: String,
    body: String,
    reply: Sender<Invocation>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    in_flight: HashMap<String, Sender<Invocation>>,
    init_error: Option<String>,
    /// When the process first asked for an invocation: the end of its init.
    first_next_at: Option<std::time::Instant>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// A function binary running against this process's Runtime API server.
pub struct Function {
    name: String,
    state: Shared,
    child: Child,
    logs: Arc<Mutex<String>>,
    next_id: u64,
    spawned_at: std::time::Instant,
    /// The Runtime API address handed to the binary (`AWS_LAMBDA_RUNTIME_API`).
    pub runtime_api: String,
}

/// The directory holding the built function binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DR_FUNCTION_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

impl Function {
    /// Starts `name` (a binary in [`bin_dir`]) with the Lambda variables plus `env`.
    pub fn start(name: &str, env: &[(String, String)]) -> Function {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap_or_else(|e| panic!("runtime API server: {e}"));
        let runtime_api = server.server_addr().to_ip().map(|a| a.to_string()).unwrap_or_default();
        let state: Shared = Arc::default();
        let server_state = state.clone();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let st = server_state.clone();
                std::thread::spawn(move || serve(st, request));
            }
        });

        let bin = bin_dir().join(name);
        let spawned_at = std::time::Instant::now();
        assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` (scripts/test does)", bin.display());
        let mut child = Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_LEVEL", "info,domain=debug,engine=debug,aws=debug,app=debug,manual_trigger=debug,health_alarm=debug,replication_failure=debug")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = logs.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        Function { name: name.to_owned(), state, child, logs, next_id: 0, spawned_at, runtime_api }
    }

    /// Invokes the function with `payload` and waits (up to `timeout`) for its answer.
    pub fn invoke_with_timeout(&mut self, payload: &Value, timeout: Duration) -> Invocation {
        self.next_id += 1;
        let id = format!("{}-{:04}-{}", self.name, self.next_id, std::process::id());
        let rx = self.enqueue(id, payload.to_string());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(inv) => return inv,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Invocation::NoAnswer("the runtime API server stopped".into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Invocation::NoAnswer(format!("process exited ({status}) without answering"));
            }
            if std::time::Instant::now() >= deadline {
                return Invocation::NoAnswer(format!("no answer within {timeout:?}"));
            }
        }
    }

    /// The init time as Lambda counts it: from the process's start to its first request for an invocation
    /// (`GET /invocation/next`); `None` if it did not ask within `timeout`.
    pub fn init_duration(&self, timeout: Duration) -> Option<Duration> {
        let (lock, cvar) = &*self.state;
        let guard = lock.lock().ok()?;
        let (st, _) = cvar.wait_timeout_while(guard, timeout, |s| s.first_next_at.is_none()).ok()?;
        st.first_next_at.map(|t| t.duration_since(self.spawned_at))
    }

    /// The process's peak resident set size so far, in KiB (`VmHWM` in `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The CPU time (user + system) the process has used so far, from `/proc/<pid>/stat` (clock ticks of 10 ms).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces): utime is the 14th field.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// The process id (to kill it from another thread with `kill -9`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Invokes the function and waits up to 60 s.
    pub fn invoke(&mut self, payload: &Value) -> Invocation {
        self.invoke_with_timeout(payload, Duration::from_secs(60))
    }

    fn enqueue(&self, id: String, body: String) -> Receiver<Invocation> {
        let (tx, rx) = mpsc::channel();
        let (lock, cvar) = &*self.state;
        if let Ok(mut st) = lock.lock() {
            st.queue.push_back(Pending { id, body, reply: tx });
        }
        cvar.notify_all();
        rx
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The init error the runtime reported, if any.
    pub fn init_error(&self) -> Option<String> {
        self.state.0.lock().ok().and_then(|s| s.init_error.clone())
    }

    /// Waits for the process to exit (e.g. after a failed cold start) and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the log threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process at once (SIGKILL), as a crash or a Lambda timeout would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(state: Shared, mut request: tiny_http::Request) {
    let url = request.url().to_owned();
    let method = request.method().clone();
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let path = url.trim_start_matches("/2018-06-01/runtime");
    let (lock, cvar) = &*state;
    if method == tiny_http::Method::Get && path == "/invocation/next" {
        // Long poll, as the real API does, until an invocation is queued.
        let pending = {
            let Ok(mut st) = lock.lock() else { return };
            if st.first_next_at.is_none() {
                st.first_next_at = Some(std::time::Instant::now());
                cvar.notify_all();
            }
            loop {
                if let Some(p) = st.queue.pop_front() {
                    st.in_flight.insert(p.id.clone(), p.reply.clone());
                    break p;
                }
                st = match cvar.wait(st) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        };
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 60_000)
            .unwrap_or_default();
        let headers = [
            ("Lambda-Runtime-Aws-Request-Id", pending.id.clone()),
            ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-west-2:123456789012:function:local".to_owned()),
            ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ];
        let mut resp = tiny_http::Response::from_string(pending.body);
        for (k, v) in headers {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        let _ = request.respond(resp);
        return;
    }
    if method == tiny_http::Method::Post && path == "/init/error" {
        if let Ok(mut st) = lock.lock() {
            st.init_error = Some(body);
        }
        let _ = request.respond(tiny_http::Response::from_string("{}").with_status_code(202));
        return;
    }
    if method == tiny_http::Method::Post
        && let Some(rest) = path.strip_prefix("/invocation/")
    {
        let (id, kind) = rest.rsplit_once('/').unwrap_or((rest, ""));
        let reply = lock.lock().ok().and_then(|mut st| st.in_flight.remove(id));
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
        let outcome = match kind {
            "response" => Some(Invocation::Response(parsed)),
            "error" => Some(Invocation::Error(parsed)),
            _ => None,
        };
        if let (Some(reply), Some(outcome)) = (reply, outcome) {
            let _ = reply.send(outcome);
            let _ = request.respond(tiny_http::Response::from_string("{\"status\":\"OK\"}").with_status_code(202));
            return;
        }
    }
    let _ = request.respond(tiny_http::Response::from_string("not found").with_status_code(404));
}
