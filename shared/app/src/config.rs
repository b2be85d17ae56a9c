//! Typed configuration read once from the environment at cold start (see CONTRACT.md, "Configuration").
//!
//! Each variable is validated here so that a typo in template.yaml fails the cold start with a message
//! naming the variable, instead of failing the first failover at 3 a.m.

use crate::error::ConfigError;
use domain::names::{BucketName, EnvironmentName, SsmPrefix, TopicArn};

/// The handlers' configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DR_ENVIRONMENT`.
    pub environment: EnvironmentName,
    /// `DR_SSM_PREFIX`.
    pub ssm_prefix: SsmPrefix,
    /// `DR_CONTROL_BUCKET`.
    pub control_bucket: BucketName,
    /// `DR_PAGING_TOPIC_ARN`.
    pub paging_topic: TopicArn,
    /// `DR_CHAT_TOPIC_ARN`, optional.
    pub chat_topic: Option<TopicArn>,
    /// `AWS_REGION`: the region the stack runs in (the secondary region).
    pub region: String,
    /// `DR_LOCK_LEASE_SECONDS`, optional (default 120): how long a running attempt holds the failover lock.
    /// Must exceed the function timeout, so that a live attempt is never taken over.
    pub lock_lease_seconds: u32,
    /// `DR_APPROVAL_WINDOW_MINUTES`, optional (default 60): how long a failover prepared in approval mode
    /// holds the lock waiting for `approve`.
    pub approval_window_minutes: u32,
    /// `DR_MANUAL_TRIGGER_FUNCTION`, optional: the manual-trigger function's name, printed in the commands
    /// pages tell on-call to run (defaults to this function's own name, else `manual-trigger`).
    pub manual_trigger_function: String,
    /// `DR_REPLICATION_QUIET_MINUTES`, optional (default 30): how long a replication incident must stay quiet
    /// before the scheduled `check` closes it with an `OK` page.
    pub replication_quiet_minutes: u32,
    /// `DR_PRIME_CONNECTIONS`, optional (`true` or `false`, default false): open the SSM, S3 and SNS connections
    /// during init ([`aws::AwsClients::prime`]), so that the first invocation finds them warm.
    pub prime_connections: bool,
    /// `DR_EXPORT_DEADLINE_SECONDS`, optional (default 90): the longest a snapshot's export of one Databricks
    /// workspace may take; what is not in by then is recorded as partial. Keep it under the function timeout.
    pub export_deadline_seconds: u32,
    /// `DR_EXPORT_CONCURRENCY`, optional (default 32, at most 64): calls in flight at once to one workspace during an
    /// export (at 150 ms a call, 32 in flight keep up with the client's rate limit, `DR_DATABRICKS_RATE_LIMIT`).
    pub export_concurrency: u32,
    /// `DR_EXPORT_QUEUE_URL`, optional: the SQS queue of a carried export's continuations (template: `ExportQueue`).
    /// Set, a snapshot's workspace export is carried over invocations (`dr_workspace::carry`) instead of held in
    /// one; unset, it runs in one invocation.
    pub export_queue_url: Option<String>,
    /// `DR_EXPORT_PART_SIZE`, optional (default 2000, 1..=100000): the ACL and grant reads in one part of a carried
    /// export (about 13 s at 150 requests per second).
    pub export_part_size: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let chat_topic = match env.get("DR_CHAT_TOPIC_ARN") {
            None => None,
            Some(value) => Some(TopicArn::parse(&value).map_err(|problem| ConfigError::Invalid {
                name: "DR_CHAT_TOPIC_ARN",
                value,
                problem,
                expected: TOPIC,
            })?),
        };
        let manual_trigger_function = lookup("DR_MANUAL_TRIGGER_FUNCTION")
            .or_else(|| lookup("AWS_LAMBDA_FUNCTION_NAME").filter(|n| n.contains("manual-trigger")))
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "manual-trigger".to_owned());
        Ok(Config {
            region: env.region()?,
            lock_lease_seconds: env.number("DR_LOCK_LEASE_SECONDS", 120, 1..=3600)?,
            approval_window_minutes: env.number("DR_APPROVAL_WINDOW_MINUTES", 60, 1..=10080)?,
            manual_trigger_function,
            replication_quiet_minutes: env.number("DR_REPLICATION_QUIET_MINUTES", 30, 1..=10080)?,
            prime_connections: env.flag("DR_PRIME_CONNECTIONS")?,
            export_deadline_seconds: env.number("DR_EXPORT_DEADLINE_SECONDS", 90, 1..=840)?,
            export_concurrency: env.number("DR_EXPORT_CONCURRENCY", 32, 1..=64)?,
            export_queue_url: env.get("DR_EXPORT_QUEUE_URL").map(|v| v.trim().to_owned()),
            export_part_size: env.number("DR_EXPORT_PART_SIZE", 2000, 1..=100_000)?,
            environment: env.required("DR_ENVIRONMENT", "a short environment name such as prod", EnvironmentName::parse)?,
            ssm_prefix: env.required("DR_SSM_PREFIX", "an SSM path such as /dr/prod", SsmPrefix::parse)?,
            control_bucket: env.required("DR_CONTROL_BUCKET", "an S3 bucket name", BucketName::parse)?,
            paging_topic: env.required("DR_PAGING_TOPIC_ARN", TOPIC, TopicArn::parse)?,
            chat_topic,
        })
    }
}

/// What a topic variable expects.
const TOPIC: &str = "an SNS topic ARN such as arn:aws:sns:us-west-2:123456789012:dr-paging";

/// The variables, read through a lookup: blank counts as unset, every problem names the variable and what it
/// expects.
struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    /// The variable's value, unless unset or blank.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be set and parse.
    fn required<T>(
        &self,
        name: &'static str,
        expected: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.get(name).ok_or(ConfigError::Missing { name, expected })?;
        parse(&value).map_err(|problem| ConfigError::Invalid { name, value, problem, expected })
    }

    /// A whole number in `range`, `default` when unset.
    fn number(&self, name: &'static str, default: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32, ConfigError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        match value.trim().parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                problem: format!("not a whole number in {}..={}", range.start(), range.end()),
                value,
                expected: "a whole number",
            }),
        }
    }

    /// `true` or `false`, false when unset.
    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(value) => match value.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => {
                    Err(ConfigError::Invalid { name, value, problem: "neither true nor false".into(), expected: "true or false" })
                }
            },
        }
    }

    /// `AWS_REGION`, which Lambda always sets: a region code.
    fn region(&self) -> Result<String, ConfigError> {
        let region = self.get("AWS_REGION").ok_or(ConfigError::Missing {
            name: "AWS_REGION",
            expected: "the AWS region code the stack runs in, e.g. us-west-2",
        })?;
        if !domain::site::is_region_code(&region) {
            return Err(ConfigError::Invalid {
                name: "AWS_REGION",
                value: region,
                problem: "not a region code".into(),
                expected: "e.g. us-west-2",
            });
        }
        Ok(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("AWS_REGION", "us-west-2"),
        ("DR_ENVIRONMENT", "prod"),
        ("DR_SSM_PREFIX", "/dr/prod"),
        ("DR_CONTROL_BUCKET", "dr-control-prod"),
        ("DR_PAGING_TOPIC_ARN", "arn:aws:sns:us-west-2:123456789012:dr-paging"),
    ];

    #[test]
    fn reads_a_complete_environment() {
        let c = Config::from_lookup(env(GOOD)).unwrap();
        assert_eq!(c.ssm_prefix.child("active"), "/dr/prod/active");
        assert_eq!(c.paging_topic.region(), "us-west-2");
        assert!(c.chat_topic.is_none());
        assert!(!c.prime_connections, "priming is off unless asked for");
    }

    #[test]
    fn priming_is_read_as_true_or_false() {
        for (value, expected) in [("true", true), ("false", false), (" true ", true), ("", false)] {
            let mut pairs = GOOD.to_vec();
            pairs.push(("DR_PRIME_CONNECTIONS", value));
            assert_eq!(Config::from_lookup(env(&pairs)).unwrap().prime_connections, expected, "{value:?}");
        }
    }

    #[test]
    fn each_missing_variable_is_named() {
        for (missing, _) in GOOD {
            let pairs: Vec<_> = GOOD.iter().copied().filter(|(k, _)| k != missing).collect();
            let err = Config::from_lookup(env(&pairs)).unwrap_err().to_string();
            assert!(err.contains(missing), "{err}");
            assert!(err.contains("not set"), "{err}");
        }
    }

    #[test]
    fn malformed_values_are_named_with_what_is_expected() {
        let cases = [
            ("DR_SSM_PREFIX", "/dr/prod/", "trailing"),
            ("DR_SSM_PREFIX", "dr/prod", "start with '/'"),
            ("DR_CONTROL_BUCKET", "Bad_Bucket", "3-63"),
            ("DR_PAGING_TOPIC_ARN", "arn:aws:sqs:us-west-2:123456789012:q", "SNS topic ARN"),
            ("DR_ENVIRONMENT", "Prod", "a-z"),
            ("DR_CHAT_TOPIC_ARN", "nope", "SNS topic ARN"),
            ("DR_LOCK_LEASE_SECONDS", "0", "whole number"),
            ("DR_APPROVAL_WINDOW_MINUTES", "soon", "whole number"),
            ("AWS_REGION", "Oregon", "region"),
            ("DR_PRIME_CONNECTIONS", "yes", "true or false"),
        ];
        for (name, value, needle) in cases {
            let mut pairs: Vec<_> = GOOD.iter().copied().filter(|(k, _)| *k != name).collect();
            pairs.push((name, value));
            let err = Config::from_lookup(env(&pairs)).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(needle) && err.contains("expected"), "{err}");
        }
    }
}
