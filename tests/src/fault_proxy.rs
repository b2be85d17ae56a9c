//! A fault-injecting HTTP proxy on 127.0.0.1 between the SDK and moto.
//!
//! Point `AWS_ENDPOINT_URL` at it. Every request is logged with an operation label (`SSM GetParametersByPath`,
//! `SNS Publish`, `S3 PUT /bucket/key`); a plan fails chosen requests with a 5xx, throttling, a timeout (the
//! request is applied by moto, then the answer is held past the SDK's attempt timeout) or a reset connection
//! (closed before forwarding), once or for every retry of the same operation, or holds a request forever so a
//! test can kill the process at exactly that point.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What to do to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 InternalError without forwarding.
    ServerError,
    /// Answer a throttling error (the service's own shape) without forwarding.
    Throttle,
    /// Forward (moto applies it), then hold the answer for this long before dropping the connection.
    Timeout(Duration),
    /// Close the connection without forwarding.
    Reset,
    /// Hold the request forever without forwarding (the test kills the process).
    HoldBefore,
    /// Forward (moto applies it), then hold the answer forever (the test kills the process).
    HoldAfter,
    /// Hold the request without forwarding until [`FaultProxy::open_gate`], then forward it: another process's
    /// calls land in between (keep the hold shorter than the SDK's attempt timeout).
    Gate,
}

/// A rule: which request, what fault, and whether the retries of the same operation fail too.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The 1-based index of the request among all requests through the proxy.
    pub at: usize,
    /// The fault.
    pub fault: Fault,
    /// Fail every later request with the same operation label as well (the SDK's retries).
    pub persistent: bool,
}

#[derive(Default)]
struct State {
    count: usize,
    log: Vec<String>,
    rules: Vec<Rule>,
    persistent_labels: HashMap<String, Fault>,
    /// Requests whose label contains the text fail with the fault, until the plan changes.
    matching: Vec<(String, Fault)>,
    held: usize,
    /// The `n`th request whose label contains the text is held by [`Fault::Gate`]: (text, requests left to pass).
    gate: Option<(String, usize)>,
    gate_open: bool,
    /// Every forwarded request waits first for a latency drawn from this distribution (kept across plans).
    latency: Option<Latency>,
    /// The scope of the latency draws (set with the plan: the soak's invocation number).
    scope: u64,
    /// Calls of each operation (see [`operation_of`]) so far in this plan.
    occurrences: HashMap<String, usize>,
}

/// A heavy-tailed distribution of call latencies, as real AWS APIs show (most calls near the median, a few tens
/// of times slower): `median_ms * sqrt(2) ^ (log2(1 / (1 - u)))`-shaped, i.e. `median_ms * (1 / (2 (1 - u)))^0.5`
/// for `u` uniform, capped at `cap_ms`. Seeded and keyed by the call, not by the moment it arrives: the `k`-th
/// call of one operation (`S3 PUT PutObject`, `SNS Publish`, `SSM GetParameter`; bucket and key left out, as
/// they hold a run's own names and times) within one scope (the soak's invocation number, [`FaultProxy::scope`])
/// draws the same latency in every run of one seed, whatever other calls go on beside it. Only calls of one
/// operation made side by side can swap their draws, as the threads' scheduling orders their arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// The median latency, in ms.
    pub median_ms: u64,
    /// The longest latency drawn, in ms (keep it under the SDK's attempt timeout, or calls time out).
    pub cap_ms: u64,
    /// The seed of the draws.
    pub seed: u64,
}

impl Latency {
    /// The latency of the `occurrence`-th (1-based) call of `operation` (see [`operation_of`]) in `scope`.
    pub fn draw_for(&self, scope: u64, operation: &str, occurrence: usize) -> Duration {
        // FNV-1a over the call's identity, then splitmix64 with the seed: the same numbers on every platform.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in operation.bytes().chain(scope.to_le_bytes()).chain((occurrence as u64).to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.draw(h)
    }

    /// The latency drawn for `key` (a hash of the call's identity).
    fn draw(&self, key: u64) -> Duration {
        // splitmix64 of (seed, key): no `rand` dependency, the same numbers everywhere.
        let mut z = self.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        let factor = (1.0 / (2.0 * (1.0 - u))).sqrt();
        let ms = (self.median_ms as f64 * factor).min(self.cap_ms as f64);
        Duration::from_micros((ms * 1000.0) as u64)
    }
}

/// A request's operation without the names a run makes its own (an S3 bucket and key): `S3 PUT /b/k PutObject`
/// is `S3 PUT PutObject`; SNS and SSM labels already name the operation only.
pub fn operation_of(label: &str) -> String {
    let mut words: Vec<&str> = label.split(' ').collect();
    if words.first() == Some(&"S3") && words.len() >= 3 {
        words.remove(2);
    }
    words.join(" ")
}

/// The running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let endpoint = format!("http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || serve(conn, &upstream, &st));
            }
        });
        FaultProxy { endpoint, state }
    }

    /// Replaces the plan and resets the log and the counter (the latency draws' scope back to 0).
    pub fn plan(&self, rules: Vec<Rule>) {
        self.scope(rules, 0);
    }

    /// Replaces the plan like [`FaultProxy::plan`], with `scope` keying the latency draws of its calls (see
    /// [`Latency`]): one scope per invocation gives each invocation its own draws.
    pub fn scope(&self, rules: Vec<Rule>, scope: u64) {
        if let Ok(mut s) = self.state.0.lock() {
            let latency = s.latency;
            *s = State { rules, latency, scope, ..State::default() };
        }
    }

    /// Delays every request by a latency drawn from `latency` before it is forwarded or failed (`None`: at once).
    pub fn set_latency(&self, latency: Option<Latency>) {
        if let Ok(mut s) = self.state.0.lock() {
            s.latency = latency;
        }
    }

    /// Fails every request whose label (e.g. `S3 PUT /bucket/reports/x.json PutObject`, `SNS Publish`) contains
    /// `text` with `fault`, from now until the next [`FaultProxy::plan`].
    pub fn fail_matching(&self, text: &str, fault: Fault) {
        if let Ok(mut s) = self.state.0.lock() {
            s.matching.push((text.to_owned(), fault));
        }
    }

    /// Holds the `nth` (1-based) request whose label contains `text` before forwarding it, until
    /// [`FaultProxy::open_gate`]; [`FaultProxy::wait_held`] tells when it is held.
    pub fn gate_nth(&self, text: &str, nth: usize) {
        if let Ok(mut s) = self.state.0.lock() {
            s.gate = Some((text.to_owned(), nth.saturating_sub(1)));
            s.gate_open = false;
        }
    }

    /// Lets the request held by the gate through.
    pub fn open_gate(&self) {
        if let Ok(mut s) = self.state.0.lock() {
            s.gate_open = true;
        }
        self.state.1.notify_all();
    }

    /// The operation labels of the requests so far, in arrival order.
    pub fn log(&self) -> Vec<String> {
        self.state.0.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// Waits until a request is being held (by `HoldBefore`/`HoldAfter`), up to `timeout`.
    pub fn wait_held(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.state;
        let Ok(guard) = lock.lock() else { return false };
        cvar.wait_timeout_while(guard, timeout, |s| s.held == 0).map(|(s, _)| s.held > 0).unwrap_or(false)
    }
}

struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        // Re-encode as a plain body: read the chunks, then drop the header.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                while reader.read_line(&mut end).ok()? > 0 && !end.trim().is_empty() {
                    end.clear();
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
        head.retain(|h| !h.to_ascii_lowercase().starts_with("transfer-encoding"));
        head.push(format!("Content-Length: {}", body.len()));
    }
    Some(Request { head, body })
}

fn label(req: &Request) -> String {
    let header = |name: &str| {
        req.head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if let Some(target) = header("x-amz-target") {
        return format!("SSM {}", target.rsplit('.').next().unwrap_or(&target));
    }
    let body = String::from_utf8_lossy(&req.body);
    if let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return format!("SNS {action}");
    }
    let line = req.head.first().cloned().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    // The S3 SDK adds `x-id=PutObject` and the like: keep the path and the operation.
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let op = query.split('&').find_map(|kv| kv.strip_prefix("x-id=")).unwrap_or("");
    format!("S3 {method} {path} {op}").trim_end().to_owned()
}

fn error_response(req_label: &str, fault: Fault) -> Vec<u8> {
    let (status, body, ctype) = match (fault, req_label.split(' ').next().unwrap_or("")) {
        (Fault::Throttle, "SSM") => (400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(), "application/x-amz-json-1.1"),
        (Fault::Throttle, "SNS") => (
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>".to_owned(),
            "text/xml",
        ),
        (Fault::Throttle, _) => (503, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_owned(), "application/xml"),
        (_, "SSM") => (500, r#"{"__type":"InternalServerError","message":"injected"}"#.to_owned(), "application/x-amz-json-1.1"),
        (_, "SNS") => (
            500,
            "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>injected</Message></Error><RequestId>x</RequestId></ErrorResponse>".to_owned(),
            "text/xml",
        ),
        _ => (500, "<Error><Code>InternalError</Code><Message>injected</Message></Error>".to_owned(), "application/xml"),
    };
    format!(
        "HTTP/1.1 {status} Injected\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn forward(req: &Request, upstream: &str) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut head: Vec<String> = req.head.iter().filter(|h| !h.to_ascii_lowercase().starts_with("connection:")).cloned().collect();
    head.push("Connection: close".into());
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out).ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).ok()?;
    Some(resp)
}

fn hold_forever(state: &Arc<(Mutex<State>, Condvar)>) {
    if let Ok(mut s) = state.0.lock() {
        s.held += 1;
    }
    state.1.notify_all();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn wait_for_gate(state: &Arc<(Mutex<State>, Condvar)>) {
    let (lock, cvar) = &**state;
    let Ok(mut s) = lock.lock() else { return };
    s.held += 1;
    cvar.notify_all();
    while !s.gate_open {
        s = match cvar.wait(s) {
            Ok(s) => s,
            Err(_) => return,
        };
    }
    s.held = s.held.saturating_sub(1);
}

fn serve(conn: TcpStream, upstream: &str, state: &Arc<(Mutex<State>, Condvar)>) {
    let Ok(write_half) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    let mut client = write_half;
    // One request per connection: every answer closes it, so the SDK opens a new one for the next.
    let Some(req) = read_request(&mut reader) else { return };
    let l = label(&req);
    let (fault, delay) = {
        let Ok(mut s) = state.0.lock() else { return };
        s.count += 1;
        let n = s.count;
        let op = operation_of(&l);
        let occurrence = {
            let k = s.occurrences.entry(op.clone()).or_default();
            *k += 1;
            *k
        };
        let delay = s.latency.map(|lat| lat.draw_for(s.scope, &op, occurrence));
        s.log.push(l.clone());
        let by_rule = s.rules.iter().find(|r| r.at == n).copied();
        let gated = match &mut s.gate {
            Some((text, left)) if l.contains(text.as_str()) => {
                let hit = *left == 0;
                *left = left.wrapping_sub(1);
                hit
            }
            _ => false,
        };
        let fault = if gated {
            Some(Fault::Gate)
        } else if let Some(rule) = by_rule {
            if rule.persistent {
                s.persistent_labels.insert(l.clone(), rule.fault);
            }
            Some(rule.fault)
        } else {
            s.persistent_labels
                .get(&l)
                .copied()
                .or_else(|| s.matching.iter().find(|(text, _)| l.contains(text.as_str())).map(|(_, f)| *f))
        };
        (fault, delay)
    };
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    match fault {
        None => {
            if let Some(resp) = forward(&req, upstream) {
                let _ = client.write_all(&resp);
            }
        }
        Some(Fault::ServerError) | Some(Fault::Throttle) => {
            let _ = client.write_all(&error_response(&l, fault.unwrap_or(Fault::ServerError)));
        }
        Some(Fault::Reset) => {}
        Some(Fault::Timeout(d)) => {
            let _ = forward(&req, upstream);
            std::thread::sleep(d);
        }
        Some(Fault::HoldBefore) => hold_forever(state),
        Some(Fault::Gate) => {
            wait_for_gate(state);
            if let Some(resp) = forward(&req, upstream) {
                let _ = client.write_all(&resp);
            }
        }
        Some(Fault::HoldAfter) => {
            let _ = forward(&req, upstream);
            hold_forever(state);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::{Latency, operation_of};
    use std::time::Duration;

    const LAT: Latency = Latency { median_ms: 3, cap_ms: 60, seed: 0x5eed_50a4 };

    #[test]
    fn a_calls_latency_is_keyed_by_its_operation_and_occurrence_not_its_bucket_or_arrival() {
        // Two runs name their buckets and keys differently; the same call draws the same latency.
        assert_eq!(operation_of("S3 PUT /dr-t1a2b/executions/alarm-1.json PutObject"), "S3 PUT PutObject");
        assert_eq!(operation_of("S3 GET /dr-t9f8e/locks/failover.json GetObject"), "S3 GET GetObject");
        assert_eq!(operation_of("SNS Publish"), "SNS Publish");
        assert_eq!(operation_of("SSM GetParametersByPath"), "SSM GetParametersByPath");
        let one = LAT.draw_for(7, "S3 PUT PutObject", 2);
        assert_eq!(one, LAT.draw_for(7, "S3 PUT PutObject", 2), "a replay draws the same");
        // Each invocation (scope) draws its own, as does each call: not one sequence repeated per invocation.
        let per_scope: Vec<Duration> = (1..=50).map(|scope| LAT.draw_for(scope, "SNS Publish", 1)).collect();
        let distinct: std::collections::BTreeSet<Duration> = per_scope.iter().copied().collect();
        assert!(distinct.len() > 40, "{per_scope:?}");
        assert_ne!(LAT.draw_for(7, "SNS Publish", 1), LAT.draw_for(7, "S3 PUT PutObject", 1));
        // The distribution: median near `median_ms`, a heavy tail up to the cap, nothing beyond it.
        let mut all: Vec<Duration> = (0..2000).map(|k| LAT.draw_for(k, "S3 GET GetObject", 1)).collect();
        all.sort();
        let median = all[1000].as_secs_f64() * 1000.0;
        assert!((2.5..=3.5).contains(&median), "median {median} ms");
        assert!(all[1999] <= Duration::from_millis(60) && all[1990] > Duration::from_millis(15), "{:?}", &all[1990..]);
    }
}
