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
    /// Set, a snapshot's workspace export is carried over invocations (`engine::workspace::carry`) instead of held in
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
        fn required<T>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            expected: &'static str,
            parse: fn(&str) -> Result<T, String>,
        ) -> Result<T, ConfigError> {
            let value = lookup(name).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing { name, expected })?;
            parse(&value).map_err(|problem| ConfigError::Invalid { name, value, problem, expected })
        }
        const TOPIC: &str = "an SNS topic ARN such as arn:aws:sns:us-west-2:123456789012:dr-paging";
        let chat_topic = match lookup("DR_CHAT_TOPIC_ARN").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(value) => Some(TopicArn::parse(&value).map_err(|problem| ConfigError::Invalid {
                name: "DR_CHAT_TOPIC_ARN",
                value,
                problem,
                expected: TOPIC,
            })?),
        };
        let number = |name: &'static str, default: u32, range: std::ops::RangeInclusive<u32>| -> Result<u32, ConfigError> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(value) => match value.trim().parse::<u32>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        name,
                        problem: format!("not a whole number in {}..={}", range.start(), range.end()),
                        value,
                        expected: "a whole number",
                    }),
                },
            }
        };
        let prime_connections = match lookup("DR_PRIME_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
            None => false,
            Some(value) => match value.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "DR_PRIME_CONNECTIONS",
                        value,
                        problem: "neither true nor false".into(),
                        expected: "true or false",
                    });
                }
            },
        };
        let region = lookup("AWS_REGION").filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing {
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
        let manual_trigger_function = lookup("DR_MANUAL_TRIGGER_FUNCTION")
            .or_else(|| lookup("AWS_LAMBDA_FUNCTION_NAME").filter(|n| n.contains("manual-trigger")))
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "manual-trigger".to_owned());
        Ok(Config {
            region,
            lock_lease_seconds: number("DR_LOCK_LEASE_SECONDS", 120, 1..=3600)?,
            approval_window_minutes: number("DR_APPROVAL_WINDOW_MINUTES", 60, 1..=10080)?,
            manual_trigger_function,
            replication_quiet_minutes: number("DR_REPLICATION_QUIET_MINUTES", 30, 1..=10080)?,
            prime_connections,
            export_deadline_seconds: number("DR_EXPORT_DEADLINE_SECONDS", 90, 1..=840)?,
            export_concurrency: number("DR_EXPORT_CONCURRENCY", 32, 1..=64)?,
            export_queue_url: lookup("DR_EXPORT_QUEUE_URL").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            export_part_size: number("DR_EXPORT_PART_SIZE", 2000, 1..=100_000)?,
            environment: required(&lookup, "DR_ENVIRONMENT", "a short environment name such as prod", EnvironmentName::parse)?,
            ssm_prefix: required(&lookup, "DR_SSM_PREFIX", "an SSM path such as /dr/prod", SsmPrefix::parse)?,
            control_bucket: required(&lookup, "DR_CONTROL_BUCKET", "an S3 bucket name", BucketName::parse)?,
            paging_topic: required(&lookup, "DR_PAGING_TOPIC_ARN", TOPIC, TopicArn::parse)?,
            chat_topic,
        })
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
