//! `dr watch EXECUTION` and `dr report EXECUTION`: read the execution's record and report in the control bucket
//! through the engine's port (`ControlBucket`) and record reader, as the functions do.

use crate::render::{Style, duration_ms};
use dr_failover::record::{ExecutionRecord, ExecutionState, StepOutcome, StepRecord};
use dr_ports::ControlBucket;
use serde_json::{Value, json};
use std::io::Write as _;
use std::time::{Duration, Instant};

/// How long `watch` waits for a record to appear (an execution being started elsewhere) before giving up.
pub const NOT_FOUND_GRACE: Duration = Duration::from_secs(30);

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The execution ended (any terminal state but `failed`), or awaits approval with `--until-approval`.
    Ended,
    /// It failed for good.
    Failed,
    /// The time ran out before it ended.
    TimedOut,
    /// No record appeared.
    NotFound,
}

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The execution.
    pub execution_id: String,
    /// Between two reads.
    pub interval: Duration,
    /// Overall.
    pub timeout: Duration,
    /// Stop at `awaiting_approval`.
    pub until_approval: bool,
    /// JSON lines instead of text.
    pub json: bool,
}

/// One step as a line of text.
pub fn step_line(s: &StepRecord, style: Style) -> String {
    let outcome = match s.outcome {
        StepOutcome::Done => style.good("done"),
        StepOutcome::AlreadyDone => style.dim("already done"),
        StepOutcome::Failed => style.bad("FAILED"),
    };
    // Pad before colouring: escape codes would count as width.
    let pad = 13usize.saturating_sub(match s.outcome {
        StepOutcome::Done => 4,
        StepOutcome::AlreadyDone => 12,
        StepOutcome::Failed => 6,
    });
    let detail = s.detail.as_deref().map(|d| style.dim(d)).unwrap_or_default();
    format!("  {:<9} {outcome}{:pad$} {:>8}  {detail}", s.step.as_str(), "", duration_ms(s.duration_ms)).trim_end().to_owned()
}

fn state_word(state: ExecutionState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// What a finished (or waiting) execution comes to, in a line.
pub fn ending_line(r: &ExecutionRecord, style: Style) -> String {
    let id = &r.execution_id;
    let word = state_word(r.state).replace('_', " ");
    match r.state {
        ExecutionState::Completed => format!(
            "{}: {} to {} verified (RTO {}); report: dr report {id}",
            style.good(&word),
            r.kind,
            r.target,
            duration_ms(dr_failover::report::rto_ms(r))
        ),
        ExecutionState::AwaitingApproval => {
            format!("{}: dr approve {id}   or   dr cancel {id}", style.warn(&word))
        }
        ExecutionState::Failed => format!(
            "{}: {}; act by hand (dr status), report: dr report {id}",
            style.bad(&word),
            r.error.as_deref().unwrap_or("no error recorded")
        ),
        _ => {
            let why = r.decision.reasons.last().cloned().unwrap_or_default();
            format!("{}: {why}; report: dr report {id}", style.warn(&word))
        }
    }
}

/// Follows an execution, printing each step as its record shows it, until it ends.
pub async fn watch<B: ControlBucket>(bucket: &B, opts: &WatchOptions, style: Style) -> Result<Watched, String> {
    let id = &opts.execution_id;
    let started = Instant::now();
    let mut shown = Shown::default();
    let mut waiting_said = false;
    let mut out = std::io::stdout();
    if !opts.json {
        let _ = writeln!(out, "watching {id} ({}), every {:?}", domain::layout::execution_record(id), opts.interval);
    }
    loop {
        let rec = dr_failover::record::read(bucket, id).await.map_err(|e| format!("cannot read the record of {id}: {e}"))?;
        match rec {
            None => {
                if !waiting_said && !opts.json {
                    let _ = writeln!(out, "  no record yet; waiting for it to appear");
                    waiting_said = true;
                }
            }
            Some(rec) => {
                if let Some(ended) = shown.show(&mut out, &rec.record, opts, style) {
                    return Ok(ended);
                }
            }
        }
        // A record that never appeared is most likely a mistyped id: do not wait the whole timeout for it.
        if shown.state.is_none() && started.elapsed() >= opts.timeout.min(NOT_FOUND_GRACE) {
            return Ok(Watched::NotFound);
        }
        if started.elapsed() >= opts.timeout {
            return Ok(Watched::TimedOut);
        }
        tokio::time::sleep(opts.interval.min(opts.timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// What `watch` has printed of the record so far: each read prints only what changed.
#[derive(Debug, Default)]
struct Shown {
    /// The steps printed.
    steps: usize,
    /// The state last printed (`None`: no record read yet).
    state: Option<ExecutionState>,
    /// The error last seen.
    error: Option<String>,
}

impl Shown {
    /// Prints what changed in `r` since the last read; the watch's end once `r` ends it.
    fn show(&mut self, out: &mut impl std::io::Write, r: &ExecutionRecord, opts: &WatchOptions, style: Style) -> Option<Watched> {
        let id = &opts.execution_id;
        // A record rewritten from the start (a new attempt) is printed again.
        if r.steps.len() < self.steps {
            self.steps = 0;
        }
        if self.state != Some(r.state) {
            let _ = writeln!(out, "{}", state_line(id, r, opts.json, style));
            self.state = Some(r.state);
        }
        for s in &r.steps[self.steps..] {
            if opts.json {
                let _ = writeln!(out, "{}", json!({"execution_id": id, "step": s}));
            } else {
                let _ = writeln!(out, "{}", step_line(s, style));
            }
        }
        self.steps = r.steps.len();
        if r.error != self.error {
            if let (Some(e), false) = (&r.error, opts.json) {
                let _ = writeln!(out, "  {} {e}", style.warn("stopped:"));
            }
            self.error = r.error.clone();
        }
        let _ = out.flush();
        let stop = r.state.is_terminal() || (opts.until_approval && r.state == ExecutionState::AwaitingApproval);
        if !stop {
            return None;
        }
        if opts.json {
            let _ = writeln!(
                out,
                "{}",
                json!({"execution_id": id, "state": r.state, "ended": true, "error": r.error, "report_key": r.report_key,
                       "rto_ms": dr_failover::report::rto_ms(r)})
            );
        } else {
            let _ = writeln!(out, "{}", ending_line(r, style));
        }
        Some(if r.state == ExecutionState::Failed { Watched::Failed } else { Watched::Ended })
    }
}

/// A new state of the execution, as a line (of JSON with `json`).
fn state_line(id: &str, r: &ExecutionRecord, json: bool, style: Style) -> String {
    if json {
        json!({"execution_id": id, "state": r.state, "kind": r.kind, "target": r.target}).to_string()
    } else {
        format!("{} {} {} -> {}: {}", style.bold("state"), r.kind, id, r.target, state_word(r.state).replace('_', " "))
    }
}

/// The report of an execution: the Markdown (or, with `json`, the JSON report), `None` when absent.
pub async fn report<B: ControlBucket>(bucket: &B, execution_id: &str, json: bool) -> Result<Option<String>, String> {
    let (json_key, md_key) = domain::layout::report(execution_id);
    let key = if json { json_key } else { md_key };
    let Some(o) = bucket.get(&key).await.map_err(|e| format!("cannot read {key}: {e}"))? else { return Ok(None) };
    if json {
        let v: Value = serde_json::from_slice(&o.body).map_err(|e| format!("{key} is not JSON: {e}"))?;
        return Ok(Some(serde_json::to_string_pretty(&v).unwrap_or_default()));
    }
    Ok(Some(String::from_utf8_lossy(&o.body).into_owned()))
}
