//! Logging: JSON lines through `tracing`, one per event, with structured fields.
//!
//! Lambda forwards stdout to CloudWatch Logs; JSON lets Logs Insights and metric filters query the fields.
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by the function's LoggingConfig), else `RUST_LOG`,
//! else `info`. Never log a whole event or a secret at INFO.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber; call once in `main`.
pub fn init() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| EnvFilter::new(l.to_lowercase()))
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Logs go to stderr: a break-glass CLI prints its answer on stdout, and Lambda captures both.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .try_init();
}
