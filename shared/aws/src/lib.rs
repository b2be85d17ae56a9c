//! AWS adapters: the only crate that names `aws_sdk_*` types. One adapter per port of `dr_ports`.
//!
//! Module map: [`ssm`] (the parameter store), [`s3`] (the control bucket), [`sns`] (the paging and chat
//! topics), [`route53`] (client redirection's CNAME), the Databricks connector's secrets ([`ssm::SsmSecrets`]; the
//! connector itself is the `dr-databricks` crate),
//! [`sqs`] (a carried export's continuations), [`data_buckets`] (the Delta tables' replicas), and, with the
//! `operator` feature (`dr` only), `operator` (who is asking, and `dr --function`'s Lambda Invoke);
//! this file builds the clients once ([`AwsClients`]) and classifies SDK errors into
//! [`dr_ports::error::StoreError`] once, where the SDK error is still in hand.

pub mod data_buckets;
#[cfg(feature = "operator")]
pub mod operator;
pub mod route53;
pub mod s3;
pub mod sns;
pub mod sqs;
pub mod ssm;

use aws_config::{BehaviorVersion, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use dr_ports::error::StoreError;
use std::time::Duration;

/// Connect timeout: a region that is failing tends to hang rather than refuse.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout of one attempt (one HTTP exchange).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one operation, all retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per operation with the SDK's standard retry strategy (exponential backoff with jitter).
pub const MAX_ATTEMPTS: u32 = 3;
/// The longest [`AwsClients::prime`] may add to a cold start, all three services together.
pub const PRIME_DEADLINE: Duration = Duration::from_secs(1);

/// What [`AwsClients::prime`] calls: for each service, the cheapest call the function's role may already make.
#[derive(Debug, Clone)]
pub struct PrimeTargets {
    /// SSM `GetParameter` (no decryption) of this parameter: `{prefix}/active`.
    pub parameter: String,
    /// S3 `HeadBucket` of this bucket (`s3:ListBucket`, which every role holds on the control bucket).
    pub bucket: String,
    /// SNS `GetTopicAttributes` of this topic: the paging topic.
    pub topic: String,
}

/// Where the SDK configuration departs from the process environment's: the AWS variables of a `dr` profile file
/// (an explicit `--env` wins over an old `export`). Empty for the functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdkOverrides {
    /// `AWS_PROFILE`: the profile of `~/.aws/config` whose credentials (static, assume-role...) are used.
    pub profile: Option<String>,
    /// `AWS_REGION`.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL` (a local endpoint; S3 then uses path-style addressing).
    pub endpoint_url: Option<String>,
}

/// The SDK clients, built once at cold start and shared by every invocation.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// S3 (control bucket, data buckets).
    pub s3: aws_sdk_s3::Client,
    /// SNS (paging and chat topics).
    pub sns: aws_sdk_sns::Client,
    /// SSM Parameter Store.
    pub ssm: aws_sdk_ssm::Client,
    /// Route 53 (client redirection; built without a call, used only by a failover with `{prefix}/redirection`).
    pub route53: aws_sdk_route53::Client,
    /// SQS (the continuations of a carried workspace export; built without a call, used only by manual-trigger).
    pub sqs: aws_sdk_sqs::Client,
    /// The configuration they were built from: the operator's calls (module `operator`, `dr` only) build their clients
    /// from it, so that one credential chain (one assume-role, say) serves every call.
    pub sdk: SdkConfig,
}

impl AwsClients {
    /// Loads one `SdkConfig` from the environment (region, credentials, `AWS_ENDPOINT_URL`) with explicit
    /// timeouts and standard retries, and builds the clients from it: [`AwsClients::load`] without overrides.
    pub async fn from_env() -> AwsClients {
        Self::load(&SdkOverrides::default()).await
    }

    /// [`AwsClients::from_env`] with `overrides` over the environment (a `dr` profile file's AWS variables).
    ///
    /// `DR_AWS_ATTEMPT_TIMEOUT_MS` and `DR_AWS_INITIAL_BACKOFF_MS` override the attempt timeout and the
    /// first retry's backoff (the fault tests shorten both; production keeps the defaults).
    pub async fn load(overrides: &SdkOverrides) -> AwsClients {
        let attempt = std::env::var("DR_AWS_ATTEMPT_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| (100..=60_000).contains(ms))
            .map(Duration::from_millis)
            .unwrap_or(ATTEMPT_TIMEOUT);
        let backoff = std::env::var("DR_AWS_INITIAL_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| (1..=10_000).contains(ms))
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt)
                    .operation_timeout(OPERATION_TIMEOUT.max(attempt * MAX_ATTEMPTS))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS).with_initial_backoff(backoff));
        if let Some(p) = &overrides.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &overrides.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &overrides.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        Self::from_sdk_config(&loader.load().await)
    }

    /// Clients of an empty configuration (no region, no credentials, nothing loaded): they make no call until
    /// used, and then fail. For tests of what is wired to what.
    pub fn unconfigured() -> AwsClients {
        Self::from_sdk_config(&SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build())
    }

    /// Builds the clients from a loaded config. S3 uses path-style addressing when an endpoint override is
    /// set (moto and other local endpoints do not serve virtual-hosted bucket names).
    pub fn from_sdk_config(sdk: &SdkConfig) -> AwsClients {
        let s3_conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sns: aws_sdk_sns::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            route53: aws_sdk_route53::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            sdk: sdk.clone(),
        }
    }
}

impl AwsClients {
    /// Opens the TLS connections the first invocation will use, during init: one cheap call per service, the
    /// three side by side, the whole bounded by `deadline` ([`PRIME_DEADLINE`]). Best effort: an error or the
    /// deadline is logged (warn) and init goes on; the answer (a 404 or an access error still leaves a warm
    /// connection) is not used. Each client keeps its connection idle in its pool (the SDK's default HTTPS
    /// client: hyper's pool, idle timeout 90 s), where the first invocation's call to the same endpoint finds it.
    /// The process's first handshake also pays its one-off TLS set-up (AWS-LC seeding its entropy source: about
    /// 30 ms of CPU in tests/benches/tls.rs), which then leaves the first invocation too.
    pub async fn prime(&self, targets: &PrimeTargets, deadline: Duration) {
        let started = std::time::Instant::now();
        let timed = |service: &'static str, r: Result<Option<String>, String>| {
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(None) => tracing::debug!(service, elapsed_ms, "connection primed"),
                Ok(Some(code)) => tracing::debug!(service, elapsed_ms, code, "connection primed (the service answered an error)"),
                Err(error) => {
                    tracing::warn!(service, elapsed_ms, error = %error, "priming failed; the first call opens its connection");
                }
            }
        };
        let ssm = async {
            let r = self.ssm.get_parameter().name(&targets.parameter).send().await;
            timed("SSM", answered(r));
        };
        let s3 = async {
            let r = self.s3.head_bucket().bucket(&targets.bucket).send().await;
            timed("S3", answered(r));
        };
        let sns = async {
            let r = self.sns.get_topic_attributes().topic_arn(&targets.topic).send().await;
            timed("SNS", answered(r));
        };
        let all = async { tokio::join!(ssm, s3, sns) };
        match tokio::time::timeout(deadline, all).await {
            Ok(_) => tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "connections primed"),
            Err(_) => tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "priming the connections passed its deadline; init goes on, the first calls open what is missing"
            ),
        }
    }
}

/// A priming call's answer: any answer from the service, even an error it sent (its code, if any), means the
/// connection is open; anything else (no connection, a timeout) is the error's description.
fn answered<T, E, R>(r: Result<T, SdkError<E, R>>) -> Result<Option<String>, String>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match r {
        Ok(_) => Ok(None),
        Err(SdkError::ServiceError(se)) => Ok(Some(se.err().code().unwrap_or("unknown").to_owned())),
        Err(e) => Err(dr_ports::error::error_chain(&e)),
    }
}

/// Error codes that mean "try again later" across S3, SNS and SSM.
const TRANSIENT_CODES: [&str; 9] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyUpdates",
    "RequestLimitExceeded",
    "SlowDown",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Classifies an SDK error once, keeping its description (with the whole cause chain).
pub(crate) fn classify<E, R>(service: &'static str, operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            TRANSIENT_CODES.contains(&code) || code.starts_with("Internal") || code.ends_with("Unavailable")
        }
        _ => false,
    };
    // A service's answer says it in its code and message; the SDK's chain for an error it does not model adds
    // the request id (different at every call) and the metadata's Debug form, which helps nobody on a page.
    let message = match (&err, err.code(), err.message()) {
        (SdkError::ServiceError(_), Some(code), Some(text)) => format!("{code}: {text}"),
        (_, Some(code), _) => format!("{code}: {}", dr_ports::error::error_chain(&err)),
        _ => dr_ports::error::error_chain(&err),
    };
    if transient {
        StoreError::Transient { service, operation, message }
    } else {
        StoreError::Refused { service, operation, message }
    }
}
