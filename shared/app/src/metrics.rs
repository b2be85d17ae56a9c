//! The functions' own CloudWatch metrics, in Embedded Metric Format (EMF).
//!
//! Each call prints one JSON line to stdout; Lambda ships stdout to CloudWatch Logs, which extracts the metric
//! (namespace [`NAMESPACE`], dimensions `Environment` plus the metric's own) without an API call or an IAM
//! permission, and keeps the line searchable beside the logs. A line is written whole under stdout's lock, so
//! concurrent tasks never interleave; a failed write is ignored (a metric never fails an invocation).
//!
//! Lines are written only under a Lambda runtime (`AWS_LAMBDA_RUNTIME_API` set, as Lambda and the test
//! harness do): elsewhere, e.g. a break-glass CLI whose stdout is its answer, the calls do nothing.
//!
//! The log level matters: with the function's `LoggingConfig` in JSON format, Lambda gives these lines (which
//! carry no `level`) the level INFO, so an `ApplicationLogLevel` above INFO would drop the metrics.
//! template.yaml's dashboard and alarms name these metrics; tests/tests/template.rs keeps the two in step.

use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every metric the functions emit.
pub const NAMESPACE: &str = "DatabricksDR";

/// The dimension every metric carries: the protected environment (`DR_ENVIRONMENT`).
pub const ENVIRONMENT_DIMENSION: &str = "Environment";

/// CloudWatch's limit on a dimension value's length (in characters).
const MAX_DIMENSION_VALUE: usize = 1024;

/// A CloudWatch unit used by these metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of events or items.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    /// The unit's name as CloudWatch spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric: its name, unit and the dimension it carries beside [`ENVIRONMENT_DIMENSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The metric name.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Its second dimension.
    pub dimension: &'static str,
}

/// Executions by outcome (`completed`, `already_completed`, `in_progress`, `awaiting_approval`, ...).
pub const EXECUTIONS_BY_OUTCOME: Metric = Metric { name: "ExecutionsByOutcome", unit: Unit::Count, dimension: "Outcome" };
/// The duration of one execution step (`decide`, `lock`, `snapshot`, `promote`, `verify`, ...).
pub const STEP_DURATION: Metric = Metric { name: "StepDurationMs", unit: Unit::Milliseconds, dimension: "Step" };
/// Replication failure events by category.
pub const REPLICATION_FAILURES: Metric = Metric { name: "ReplicationFailures", unit: Unit::Count, dimension: "Category" };
/// Inputs kept under `quarantine/`, by the function that received them.
pub const QUARANTINED_INPUTS: Metric = Metric { name: "QuarantinedInputs", unit: Unit::Count, dimension: "Function" };

/// Every metric the functions emit.
pub const ALL: [Metric; 4] = [EXECUTIONS_BY_OUTCOME, STEP_DURATION, REPLICATION_FAILURES, QUARANTINED_INPUTS];

impl Metric {
    /// The EMF document of one value, as one line of JSON (no trailing newline).
    ///
    /// An empty dimension value becomes `unknown` and a long one is cut to CloudWatch's limit: CloudWatch
    /// drops a whole EMF record whose dimension value it cannot accept.
    pub fn render(&self, environment: &str, dimension_value: &str, value: u64, timestamp_ms: u64) -> String {
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[ENVIRONMENT_DIMENSION, self.dimension]],
                    "Metrics": [{ "Name": self.name, "Unit": self.unit.as_str() }],
                }],
            }),
        );
        doc.insert(ENVIRONMENT_DIMENSION.into(), Value::String(dimension(environment)));
        doc.insert(self.dimension.into(), Value::String(dimension(dimension_value)));
        doc.insert(self.name.into(), Value::from(value));
        Value::Object(doc).to_string()
    }

    /// Writes one value to stdout as an EMF line (under a Lambda runtime only, see the module docs).
    pub fn emit(&self, environment: &str, dimension_value: &str, value: u64) {
        if !enabled() {
            return;
        }
        let line = self.render(environment, dimension_value, value, now_ms());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// An execution's answer: its outcome, and each step's duration when it ran steps.
pub fn execution(env: &str, result: &dr_failover::ExecutionResult) {
    let outcome = serde_json::to_value(result.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    execution_outcome(env, &outcome);
    if result.outcome == dr_failover::response::Outcome::Completed {
        for (step, ms) in &result.timings_ms {
            step_duration(env, step, ms.as_u64().unwrap_or(0));
        }
    }
}

/// A command's answer: counted as an execution when an execution answered it (`failover`, `failback`,
/// `approve`, `drill`; not `unlock`, nor the read-only commands).
pub fn command(env: &str, response: &dr_failover::response::CommandResponse) {
    const EXECUTIONS: [&str; 4] = ["failover", "failback", "approve", "drill"];
    let command = response.command().unwrap_or_default();
    if !EXECUTIONS.contains(&command) {
        return;
    }
    let outcome = serde_json::to_value(response.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    execution_outcome(env, &outcome);
    if response.outcome == dr_failover::response::Outcome::Completed {
        for (step, ms) in response.timings_ms() {
            step_duration(env, &step, ms);
        }
    }
}

/// One execution ended with `outcome` (the `outcome` field of the answer).
pub fn execution_outcome(env: &str, outcome: &str) {
    EXECUTIONS_BY_OUTCOME.emit(env, outcome, 1);
}

/// An execution step took `ms` milliseconds.
pub fn step_duration(env: &str, step: &str, ms: u64) {
    STEP_DURATION.emit(env, step, ms);
}

/// `count` replication failure events of `category` arrived (one call per category per batch).
pub fn replication_failures(env: &str, category: &str, count: u64) {
    REPLICATION_FAILURES.emit(env, category, count);
}

/// `function` kept one input it could not parse under `quarantine/`.
pub fn quarantined(env: &str, function: &str) {
    QUARANTINED_INPUTS.emit(env, function, 1);
}

fn dimension(value: &str) -> String {
    let value = value.trim();
    if value.is_empty() { "unknown".to_owned() } else { value.chars().take(MAX_DIMENSION_VALUE).collect() }
}

fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty()))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u64 = 1_767_225_600_000;

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(line).unwrap()
    }

    /// The directive every line must carry, for one metric.
    fn directive(metric: &str, dimension: &str, unit: &str) -> Value {
        json!({
            "Timestamp": TS,
            "CloudWatchMetrics": [{
                "Namespace": "DatabricksDR",
                "Dimensions": [["Environment", dimension]],
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        })
    }

    #[test]
    fn execution_outcome_is_a_count_by_outcome() {
        let doc = parse(&EXECUTIONS_BY_OUTCOME.render("prod", "completed", 1, TS));
        assert_eq!(
            doc,
            json!({
                "_aws": directive("ExecutionsByOutcome", "Outcome", "Count"),
                "Environment": "prod",
                "Outcome": "completed",
                "ExecutionsByOutcome": 1,
            })
        );
    }

    #[test]
    fn step_duration_is_in_milliseconds_by_step() {
        let doc = parse(&STEP_DURATION.render("prod", "promote", 184, TS));
        assert_eq!(
            doc,
            json!({
                "_aws": directive("StepDurationMs", "Step", "Milliseconds"),
                "Environment": "prod",
                "Step": "promote",
                "StepDurationMs": 184,
            })
        );
    }

    #[test]
    fn replication_failures_count_by_category() {
        let doc = parse(&REPLICATION_FAILURES.render("staging", "DstKmsKeyNotFound", 37, TS));
        assert_eq!(
            doc,
            json!({
                "_aws": directive("ReplicationFailures", "Category", "Count"),
                "Environment": "staging",
                "Category": "DstKmsKeyNotFound",
                "ReplicationFailures": 37,
            })
        );
    }

    #[test]
    fn quarantined_inputs_count_by_function() {
        let doc = parse(&QUARANTINED_INPUTS.render("prod", "health-alarm", 1, TS));
        assert_eq!(
            doc,
            json!({
                "_aws": directive("QuarantinedInputs", "Function", "Count"),
                "Environment": "prod",
                "Function": "health-alarm",
                "QuarantinedInputs": 1,
            })
        );
    }

    #[test]
    fn every_metric_names_only_members_that_the_line_carries() {
        for metric in ALL {
            let doc = parse(&metric.render("prod", "x", 2, TS));
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            for dim in directive["Dimensions"][0].as_array().unwrap() {
                assert!(doc[dim.as_str().unwrap()].is_string(), "{} lacks dimension {dim}", metric.name);
            }
            assert_eq!(doc[metric.name], json!(2), "{}", metric.name);
            assert_eq!(directive["Namespace"], "DatabricksDR");
        }
    }

    #[test]
    fn dimension_values_that_cloudwatch_would_refuse_are_made_acceptable() {
        let doc = parse(&EXECUTIONS_BY_OUTCOME.render("prod", "  ", 1, TS));
        assert_eq!(doc["Outcome"], "unknown");
        let long = "a\"b".repeat(1000);
        let doc = parse(&STEP_DURATION.render("prod", &long, 1, TS));
        assert_eq!(doc["Step"].as_str().unwrap().chars().count(), MAX_DIMENSION_VALUE);
    }

    #[test]
    fn emitting_outside_a_lambda_runtime_is_harmless() {
        // The unit tests run without AWS_LAMBDA_RUNTIME_API: the calls must neither panic nor print.
        execution_outcome("prod", "completed");
        step_duration("prod", "lock", 12);
        replication_failures("prod", "DstPutObjectNotPermitted", 3);
        quarantined("prod", "replication-failure");
        assert!(now_ms() > TS / 2);
    }
}
