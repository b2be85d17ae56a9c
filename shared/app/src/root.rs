//! The composition root: the one place that builds what an entry point runs with. [`assemble`] wires the AWS
//! adapters into the engine from the entry point's [`Role`] (the three functions and `dr` all call it);
//! [`cold_start`] is the functions' `main` around it (logging, configuration and clients from the environment,
//! priming).
//!
//! What each role gets:
//!
//! | role | Databricks connector | Route 53 (redirection) | carried exports |
//! |---|---|---|---|
//! | `health-alarm` | yes: its failovers activate the workloads | yes: they move the stable name | no |
//! | `manual-trigger` | yes: snapshots export, failovers activate | yes | with `DR_EXPORT_QUEUE_URL` |
//! | `replication-failure` | no: it never exports nor promotes | no | no |
//! | `dr` (break-glass) | yes, as manual-trigger | yes, as manual-trigger | no: one process, one invocation |

use crate::config::Config;
use crate::error::ConfigError;
use aws::{AwsClients, PrimeTargets, s3::S3ControlBucket, sns::SnsNotifier, ssm::SsmParameterStore};
use dr_failover::{Engine, EngineSettings};
use dr_ports::SystemClock;
use dr_workspace::carry::Carrier;
use std::sync::Arc;

/// The engine over the AWS adapters.
pub type AwsEngine = Engine<SsmParameterStore, S3ControlBucket, SnsNotifier, SystemClock>;

/// The entry point being assembled: what it is given follows from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `health-alarm`: alarms decided by the policy; a failover alarm may run the failover.
    HealthAlarm,
    /// `manual-trigger`: on-call and drill commands, scheduled checks and snapshots, carried exports.
    ManualTrigger,
    /// `replication-failure`: replication events turned into incidents; never a failover, never an export.
    ReplicationFailure,
    /// `dr`: the manual-trigger commands from an operator's shell, in one process (break-glass).
    BreakGlass,
}

impl Role {
    /// Its name in logs: the function's, or `dr`.
    pub fn name(self) -> &'static str {
        match self {
            Role::HealthAlarm => "health-alarm",
            Role::ManualTrigger => "manual-trigger",
            Role::ReplicationFailure => "replication-failure",
            Role::BreakGlass => "dr",
        }
    }

    /// Whether it runs failovers and failbacks, which activate the workloads (the Databricks connector) and
    /// redirect clients (Route 53), or exports the workspaces (`snapshot`, the connector).
    fn promotes(self) -> bool {
        !matches!(self, Role::ReplicationFailure)
    }

    /// Whether a snapshot's workspace export is carried over invocations when an export queue is configured:
    /// only manual-trigger receives the continuations (its SQS event source); `dr` has no next invocation.
    fn carries_exports(self) -> bool {
        matches!(self, Role::ManualTrigger)
    }
}

/// What an entry point runs with, built once (at cold start for a function, per command for `dr`).
pub struct Assembly {
    /// The configuration it was built from.
    pub config: Config,
    /// The SDK clients (shared by the adapters; `dr` also makes its operator's calls with them).
    pub clients: AwsClients,
    /// The engine over the AWS adapters, with what the role needs.
    pub engine: AwsEngine,
    /// The carrier of a snapshot's workspace export over invocations (manual-trigger with an export queue).
    pub carrier: Option<Carrier>,
}

/// Builds what `role` runs with from its configuration and clients: the one wiring of the engine, the
/// Databricks connector, client redirection and the export queue (see the module's table).
pub fn assemble(role: Role, config: Config, clients: AwsClients) -> Assembly {
    let mut engine = engine(&clients, &config);
    if role.promotes() {
        // The connector builds its HTTP client at the first call, never at init; secrets only from
        // {prefix}/secrets/ (dr: the operator's credentials must allow those SecureString reads).
        let secrets = config.ssm_prefix.child("secrets");
        engine.workspaces = Some(Arc::new(dr_databricks::DatabricksConnector::new(
            Arc::new(aws::ssm::SsmSecrets::new(clients.ssm.clone())),
            &secrets,
        )));
        // Used only when {prefix}/redirection exists (dr_failover::activate).
        engine.dns = Some(Arc::new(aws::route53::Route53Records::new(clients.route53.clone())));
    }
    let carrier = match (&config.export_queue_url, role.carries_exports()) {
        (Some(url), true) => Some(Carrier {
            queue: Arc::new(aws::sqs::SqsExportQueue::new(clients.sqs.clone(), url.clone())),
            budget: std::time::Duration::from_secs(u64::from(config.export_deadline_seconds)),
            part_size: config.export_part_size as usize,
        }),
        _ => None,
    };
    Assembly { config, clients, engine, carrier }
}

/// A function's cold start: JSON logging, the configuration from the environment (an invalid one is logged and
/// fails the init), the clients (primed when `DR_PRIME_CONNECTIONS=true`), then [`assemble`].
pub async fn cold_start(role: Role) -> Result<Assembly, ConfigError> {
    crate::telemetry::init();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start failed: invalid configuration"))?;
    let clients = AwsClients::from_env().await;
    if config.prime_connections {
        clients.prime(&prime_targets(&config), aws::PRIME_DEADLINE).await;
    }
    let assembly = assemble(role, config, clients);
    let config = &assembly.config;
    tracing::info!(
        environment = %config.environment,
        ssm_prefix = %config.ssm_prefix,
        control_bucket = %config.control_bucket,
        carried_exports = assembly.carrier.is_some(),
        "{} ready",
        role.name()
    );
    Ok(assembly)
}

/// The engine's adapters from the clients and the configuration (what every role has).
fn engine(clients: &AwsClients, config: &Config) -> AwsEngine {
    let bucket = S3ControlBucket::new(clients.s3.clone(), config.control_bucket.clone());
    // Snapshots include the open replication incidents: they are the RPO risk of a failover.
    let incidents = dr_replication::IncidentsSource { bucket: bucket.clone() };
    // And the pointers to the workspaces' latest exports with their drift (two reads; exports never run on a
    // failover's path).
    let exports = dr_workspace::LatestExportsSource { bucket: bucket.clone() };
    // And delta-tables.json: each replicated Delta table's RPO, under a deadline (dr_delta).
    let delta = dr_delta::DeltaSource::new(aws::data_buckets::S3DataBuckets::new(clients.s3.clone()), bucket.clone());
    Engine {
        params: SsmParameterStore::new(clients.ssm.clone()),
        bucket,
        notifier: SnsNotifier::new(clients.sns.clone(), config.paging_topic.clone(), config.chat_topic.clone()),
        clock: SystemClock,
        settings: settings(config),
        sources: vec![Arc::new(incidents), Arc::new(exports), Arc::new(delta)],
        workspaces: None,
        dns: None,
    }
}

/// The engine's settings from the configuration.
pub fn settings(config: &Config) -> EngineSettings {
    EngineSettings {
        environment: config.environment.to_string(),
        prefix: config.ssm_prefix.clone(),
        region: config.region.clone(),
        lock_lease: time::Duration::seconds(i64::from(config.lock_lease_seconds)),
        approval_window: time::Duration::minutes(i64::from(config.approval_window_minutes)),
        replication_quiet: time::Duration::minutes(i64::from(config.replication_quiet_minutes)),
        holder: std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into()),
        manual_trigger_function: config.manual_trigger_function.clone(),
        lock_key: dr_ports::lock::FAILOVER_LOCK_KEY.into(),
        drill: false,
        export_limits: dr_workspace::export::ExportLimits {
            concurrency: config.export_concurrency as usize,
            deadline: std::time::Duration::from_secs(u64::from(config.export_deadline_seconds)),
            ..dr_workspace::export::ExportLimits::default()
        },
        activation_in_flight: dr_failover::ACTIVATION_IN_FLIGHT,
    }
}

/// What `DR_PRIME_CONNECTIONS=true` primes at cold start ([`AwsClients::prime`]): `{prefix}/active`, the control
/// bucket and the paging topic, which every function's role may read, describe or list.
pub fn prime_targets(config: &Config) -> PrimeTargets {
    PrimeTargets {
        parameter: config.ssm_prefix.child("active"),
        bucket: config.control_bucket.to_string(),
        topic: config.paging_topic.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_databricks_client_connects_with_the_aws_clients_timeout() {
        // Two crates, one rule: a workspace unreachable at the TCP level fails as fast as an AWS endpoint does.
        assert_eq!(dr_databricks::CONNECT_TIMEOUT, aws::CONNECT_TIMEOUT);
    }

    fn config(queue: Option<&str>) -> Config {
        let vars = [
            ("AWS_REGION", "us-west-2"),
            ("DR_ENVIRONMENT", "prod"),
            ("DR_SSM_PREFIX", "/dr/prod"),
            ("DR_CONTROL_BUCKET", "dr-control-prod"),
            ("DR_PAGING_TOPIC_ARN", "arn:aws:sns:us-west-2:123456789012:dr-paging"),
        ];
        Config::from_lookup(|name| match name {
            "DR_EXPORT_QUEUE_URL" => queue.map(str::to_owned),
            _ => vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()),
        })
        .unwrap()
    }

    fn clients() -> AwsClients {
        AwsClients::unconfigured()
    }

    #[test]
    fn each_role_gets_what_it_runs() {
        let queue = Some("https://sqs.us-west-2.amazonaws.com/123456789012/export");
        for (role, promotes, carries) in [
            (Role::HealthAlarm, true, false),
            (Role::ManualTrigger, true, true),
            (Role::ReplicationFailure, false, false),
            (Role::BreakGlass, true, false),
        ] {
            let a = assemble(role, config(queue), clients());
            assert_eq!(a.engine.workspaces.is_some(), promotes, "{role:?}: the Databricks connector");
            assert_eq!(a.engine.dns.is_some(), promotes, "{role:?}: Route 53 for client redirection");
            assert_eq!(a.carrier.is_some(), carries, "{role:?}: carried exports");
        }
        assert!(assemble(Role::ManualTrigger, config(None), clients()).carrier.is_none(), "no queue, no carrier");
    }
}
