//! Replication coverage, for `check`: each location's primary bucket is versioned and has an enabled
//! replication rule covering the location's prefix toward the replica's bucket (with replication metrics and
//! Replication Time Control as configured), the replica's bucket is versioned, and the primary bucket sends the
//! `s3:Replication:*` events toward this stack. What is missing is a finding with its fix.

use domain::data_plane::{DataPlane, Location};
use domain::notification::Severity;
use dr_ports::finding::Finding;
use dr_ports::{DataBuckets, NotificationTarget, ReplicationRule, Versioning};
use futures_util::future::join_all;

/// What coverage requires beyond a rule.
#[derive(Debug, Clone)]
pub struct CoverageSettings {
    /// The rule must have replication metrics on (the `s3:Replication:*` failure events need them).
    pub metrics: bool,
    /// The rule must have Replication Time Control on.
    pub time_control: bool,
    /// The ARN the notifications must reach (the replication-events topic); `None`: any target.
    pub events_target: Option<String>,
}

impl Default for CoverageSettings {
    fn default() -> Self {
        CoverageSettings { metrics: true, time_control: false, events_target: None }
    }
}

/// What one location's buckets answered.
#[derive(Debug, Clone)]
pub struct BucketFacts {
    /// The primary bucket's versioning.
    pub primary_versioning: Result<Versioning, String>,
    /// The replica bucket's versioning.
    pub replica_versioning: Result<Versioning, String>,
    /// The primary bucket's replication rules.
    pub rules: Result<Vec<ReplicationRule>, String>,
    /// The primary bucket's event notifications.
    pub notifications: Result<Vec<NotificationTarget>, String>,
}

fn f(loc: &Location, what: &str, severity: Severity, text: String, action: String) -> Finding {
    Finding { id: format!("coverage-{}-{what}", loc.name), severity, what: text, action }
}

fn covers(rule_prefix: &str, prefix: &str) -> bool {
    prefix.starts_with(rule_prefix) || format!("{prefix}/").starts_with(rule_prefix)
}

/// The pure part: the findings of one location from its buckets' answers.
pub fn location_findings(loc: &Location, facts: &BucketFacts, settings: &CoverageSettings) -> Vec<Finding> {
    let mut out = versioning_findings(loc, facts);
    out.extend(rule_findings(loc, facts, settings));
    out.extend(event_findings(loc, facts, settings));
    out
}

/// Versioning on both buckets: S3 replicates nothing without it.
fn versioning_findings(loc: &Location, facts: &BucketFacts) -> Vec<Finding> {
    let (p, r) = (&loc.primary.bucket, &loc.replica.bucket);
    let mut out = Vec::new();
    for (which, bucket, v) in [("versioning", p, &facts.primary_versioning), ("replica-versioning", r, &facts.replica_versioning)]
    {
        match v {
            Ok(Versioning::Enabled) => {}
            Ok(state) => out.push(f(
                loc,
                which,
                Severity::Critical,
                format!("bucket {bucket} has versioning {state:?}: S3 replicates nothing without it"),
                format!("aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled"),
            )),
            Err(e) => out.push(f(
                loc,
                which,
                Severity::Warning,
                format!("the versioning of {bucket} could not be read: {e}"),
                "grant s3:GetBucketVersioning on it to this stack's role".into(),
            )),
        }
    }
    out
}

/// An enabled replication rule covering the location toward its replica, with metrics and Replication Time
/// Control when the settings ask for them.
fn rule_findings(loc: &Location, facts: &BucketFacts, settings: &CoverageSettings) -> Vec<Finding> {
    let (p, r) = (&loc.primary.bucket, &loc.replica.bucket);
    let rules = match &facts.rules {
        Err(e) => {
            return vec![f(
                loc,
                "replication",
                Severity::Warning,
                format!("the replication configuration of {p} could not be read: {e}"),
                "grant s3:GetReplicationConfiguration on it to this stack's role".into(),
            )];
        }
        Ok(rules) => rules,
    };
    let rule = rules.iter().find(|x| {
        x.enabled && x.destination_bucket == *r && x.prefix.as_deref().is_some_and(|rp| covers(rp, &loc.primary.prefix))
    });
    let Some(rule) = rule else {
        return vec![f(
            loc,
            "replication",
            Severity::Critical,
            format!("no enabled replication rule of {p} covers {} toward {r}", String::from(loc.primary.clone())),
            format!(
                "add a rule with Filter.Prefix \"{}\" and Destination arn:aws:s3:::{r} (put-bucket-replication)",
                loc.primary.prefix
            ),
        )];
    };
    let mut out = Vec::new();
    if settings.metrics && !rule.metrics {
        out.push(f(
            loc,
            "metrics",
            Severity::Warning,
            format!("replication rule {} of {p} has replication metrics off: no failure events", rule.id),
            format!("set Destination.Metrics.Status=Enabled on rule {}", rule.id),
        ));
    }
    if settings.time_control && !rule.time_control {
        out.push(f(
            loc,
            "time-control",
            Severity::Warning,
            format!("replication rule {} of {p} has Replication Time Control off", rule.id),
            format!("set Destination.ReplicationTime.Status=Enabled (15 minutes) on rule {}", rule.id),
        ));
    }
    out
}

/// The bucket's `s3:Replication:*` events reach this stack (or the configured target) for the location.
fn event_findings(loc: &Location, facts: &BucketFacts, settings: &CoverageSettings) -> Vec<Finding> {
    let p = &loc.primary.bucket;
    let targets = match &facts.notifications {
        Err(e) => {
            return vec![f(
                loc,
                "events",
                Severity::Warning,
                format!("the event notifications of {p} could not be read: {e}"),
                "grant s3:GetBucketNotification on it to this stack's role".into(),
            )];
        }
        Ok(targets) => targets,
    };
    let reaches = targets.iter().any(|t| {
        settings.events_target.as_ref().is_none_or(|want| *want == t.arn)
            && t.events.iter().any(|e| e.starts_with("s3:Replication:"))
            && t.prefix.as_deref().is_none_or(|fp| covers(fp, &loc.primary.prefix))
    });
    if reaches {
        return Vec::new();
    }
    vec![f(
        loc,
        "events",
        Severity::Warning,
        format!(
            "bucket {p} sends no s3:Replication:* event for {} toward {}",
            loc.primary.prefix,
            settings.events_target.as_deref().unwrap_or("this stack")
        ),
        format!(
            "add a topic configuration with Events [\"s3:Replication:*\"] to {p} toward {}",
            settings.events_target.as_deref().unwrap_or("the replication-events topic")
        ),
    )]
}

/// Reads one location's buckets, side by side.
pub async fn facts<D: DataBuckets>(data: &D, loc: &Location) -> BucketFacts {
    let (pv, rv, rules, notifications) = tokio::join!(
        data.versioning(&loc.primary.bucket),
        data.versioning(&loc.replica.bucket),
        data.replication(&loc.primary.bucket),
        data.notifications(&loc.primary.bucket)
    );
    let s = |e: dr_ports::error::StoreError| e.to_string();
    BucketFacts {
        primary_versioning: pv.map_err(s),
        replica_versioning: rv.map_err(s),
        rules: rules.map_err(s),
        notifications: notifications.map_err(s),
    }
}

/// Every location's findings.
pub async fn plane_findings<D: DataBuckets>(data: &D, plane: &DataPlane, settings: &CoverageSettings) -> Vec<Finding> {
    let all =
        join_all(plane.locations.iter().map(|l| async move { location_findings(l, &facts(data, l).await, settings) })).await;
    all.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_without_a_rule_versioning_or_events_has_each_finding_with_its_fix() {
        let plane = DataPlane::parse(
            "d",
            r#"{"locations":[{"name":"orders","kind":"delta","primary":"s3://data-use1/tables/orders","replica":"s3://data-usw2/tables/orders"}]}"#,
        )
        .unwrap();
        let loc = &plane.locations[0];
        let rule = ReplicationRule {
            id: "tables".into(),
            enabled: true,
            prefix: Some("tables/".into()),
            destination_bucket: "data-usw2".into(),
            metrics: true,
            time_control: false,
        };
        let events = NotificationTarget {
            arn: "arn:aws:sns:us-east-1:1:repl".into(),
            events: vec!["s3:Replication:*".into()],
            prefix: None,
        };
        let good = BucketFacts {
            primary_versioning: Ok(Versioning::Enabled),
            replica_versioning: Ok(Versioning::Enabled),
            rules: Ok(vec![rule.clone()]),
            notifications: Ok(vec![events]),
        };
        assert_eq!(location_findings(loc, &good, &CoverageSettings::default()), vec![]);
        let rtc = CoverageSettings { time_control: true, ..CoverageSettings::default() };
        assert_eq!(location_findings(loc, &good, &rtc)[0].id, "coverage-orders-time-control");
        let bad = BucketFacts {
            primary_versioning: Ok(Versioning::Suspended),
            replica_versioning: Err("AccessDenied".into()),
            rules: Ok(vec![ReplicationRule { prefix: Some("other/".into()), ..rule }]),
            notifications: Ok(vec![]),
        };
        let ids: Vec<String> = location_findings(loc, &bad, &CoverageSettings::default()).into_iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            [
                "coverage-orders-versioning",
                "coverage-orders-replica-versioning",
                "coverage-orders-replication",
                "coverage-orders-events"
            ]
        );
    }
}
