//! The composition root: the one place that wires the AWS adapters into the engine (called once, in `main`
//! of each function and of `dr`).

use crate::config::Config;
use aws::{AwsClients, PrimeTargets, s3::S3ControlBucket, sns::SnsNotifier, ssm::SsmParameterStore};
use engine::failover::{Engine, EngineSettings};
use engine::ports::SystemClock;

/// The engine over the AWS adapters.
pub type AwsEngine = Engine<SsmParameterStore, S3ControlBucket, SnsNotifier, SystemClock>;

/// Builds the engine's adapters from the clients and the configuration.
pub fn engine(clients: &AwsClients, config: &Config) -> AwsEngine {
    let bucket = S3ControlBucket::new(clients.s3.clone(), config.control_bucket.clone());
    // Snapshots include the open replication incidents: they are the RPO risk of a failover.
    let incidents = engine::replication::IncidentsSource { bucket: bucket.clone() };
    // And the pointers to the workspaces' latest exports with their drift (two reads; exports never run on a
    // failover's path).
    let exports = engine::workspace::LatestExportsSource { bucket: bucket.clone() };
    // And delta-tables.json: each replicated Delta table's RPO, under a deadline (engine::delta).
    let delta = engine::delta::DeltaSource::new(aws::data_buckets::S3DataBuckets::new(clients.s3.clone()), bucket.clone());
    Engine {
        params: SsmParameterStore::new(clients.ssm.clone()),
        bucket,
        notifier: SnsNotifier::new(clients.sns.clone(), config.paging_topic.clone(), config.chat_topic.clone()),
        clock: SystemClock,
        settings: settings(config),
        sources: vec![std::sync::Arc::new(incidents), std::sync::Arc::new(exports), std::sync::Arc::new(delta)],
        workspaces: None,
        dns: None,
    }
}

/// Makes `engine` able to activate the workloads and redirect clients after a promotion (the functions that
/// run failovers: health-alarm and manual-trigger): the Databricks connector (its HTTP client built at the first
/// call, never at init; secrets only from `{prefix}/secrets/`) and Route 53 (used only when
/// `{prefix}/redirection` exists).
pub fn with_activation(engine: &mut AwsEngine, clients: &AwsClients, config: &Config) {
    if engine.workspaces.is_none() {
        let secrets = config.ssm_prefix.child("secrets");
        engine.workspaces = Some(std::sync::Arc::new(aws::databricks::DatabricksConnector::new(clients.ssm.clone(), &secrets)));
    }
    engine.dns = Some(std::sync::Arc::new(aws::route53::Route53Records::new(clients.route53.clone())));
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
        lock_key: engine::lock::FAILOVER_LOCK_KEY.into(),
        drill: false,
        export_limits: engine::workspace::export::ExportLimits {
            concurrency: config.export_concurrency as usize,
            deadline: std::time::Duration::from_secs(u64::from(config.export_deadline_seconds)),
            ..engine::workspace::export::ExportLimits::default()
        },
        activation_in_flight: engine::failover::ACTIVATION_IN_FLIGHT,
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
