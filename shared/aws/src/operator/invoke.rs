//! `dr --function NAME`: the command sent through the deployed `manual-trigger` function (Lambda `Invoke`,
//! request-response), for an operator who may invoke it but not touch SSM and S3 directly. The functions never
//! invoke Lambda: only the operator needs `lambda:InvokeFunction` on the function.

use crate::AwsClients;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;
use std::time::Duration;

/// How long one invocation may take: Lambda's own maximum (the function's timeout ends it first).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the function answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Its response document.
    Response(Value),
    /// It reported an error: `{"errorType", "errorMessage"}` as the runtime sent it.
    FunctionError(Value),
}

/// Why nothing usable came back.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Lambda refused or could not be reached (the function may not have run).
    #[error("cannot invoke {function} ({code}): {message}")]
    NotInvoked {
        /// The function named.
        function: String,
        /// Lambda's error code, or `no error code`.
        code: String,
        /// What Lambda or the SDK said.
        message: String,
    },
    /// The function answered something that is not JSON.
    #[error("{function} answered something that is not JSON ({problem}): {body}")]
    NotJson {
        /// The function named.
        function: String,
        /// The parser's complaint.
        problem: String,
        /// What it answered.
        body: String,
    },
}

/// Invokes `function` with `payload` and waits for its answer, with the credentials of `clients`.
///
/// Not retried: an invocation that timed out may have run, and a command without a client token would run
/// again as a new execution. The error names the function and what Lambda said.
pub async fn invoke(clients: &AwsClients, function: &str, payload: &Value) -> Result<Answer, InvokeError> {
    let conf = aws_sdk_lambda::config::Builder::from(&clients.sdk)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(crate::CONNECT_TIMEOUT)
                .operation_timeout(INVOKE_TIMEOUT)
                .operation_attempt_timeout(INVOKE_TIMEOUT)
                .build(),
        )
        .build();
    let client = aws_sdk_lambda::Client::from_conf(conf);
    // A `Value` always serialises.
    let body = serde_json::to_vec(payload).unwrap_or_default();
    let out = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(body))
        .send()
        .await
        .map_err(|e| InvokeError::NotInvoked {
            function: function.to_owned(),
            code: e.code().unwrap_or("no error code").to_owned(),
            message: e.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&e).to_string()),
        })?;
    let bytes = out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| InvokeError::NotJson {
        function: function.to_owned(),
        problem: e.to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })?;
    Ok(match out.function_error() {
        Some(_) => Answer::FunctionError(answer),
        None => Answer::Response(answer),
    })
}
