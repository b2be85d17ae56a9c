//! Logging: JSON lines through `tracing`, one per event, with structured fields.
//!
//! Lambda forwards stdout to CloudWatch Logs; JSON lets Logs Insights and metric filters query the fields.
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by the function's LoggingConfig), else `RUST_LOG`,
//! else `info`. Never log a whole event or a secret at INFO.
//!
//! The filter is `tracing_subscriber`'s `Targets` (`level` or `target=level,...`), not `EnvFilter`: the span
//! field filters of `EnvFilter` are never used here, and it links two regex engines (about 250 KiB of code).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// The filter from `AWS_LAMBDA_LOG_LEVEL` (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`, or directives as in
/// `RUST_LOG`), else `RUST_LOG`
/// (`level` or `target=level,...`), else `default`. A value that does not parse is ignored (the next source is
/// used): a typo in a log level must never silence the logs of a DR function.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>, default: LevelFilter) -> Targets {
    let from_lambda = lambda_level.and_then(|l| {
        // Lambda's FATAL has no tracing level; its nearest is ERROR.
        let l = l.trim().to_ascii_lowercase();
        let l = if l == "fatal" { "error".to_owned() } else { l };
        // Lambda sets a bare level; a local run (the end-to-end tests) may give directives, as RUST_LOG does.
        l.parse::<LevelFilter>().map(|level| Targets::new().with_default(level)).ok().or_else(|| directives(&l))
    });
    from_lambda.or_else(|| rust_log.and_then(directives)).unwrap_or_else(|| Targets::new().with_default(default))
}

/// `level` or `target=level` items separated by commas; `None` for anything else. (`Targets` alone would take a
/// bare word as a target name and switch every other target off.)
fn directives(value: &str) -> Option<Targets> {
    let value = value.trim();
    let well_formed = !value.is_empty()
        && value.split(',').all(|item| {
            let level = item.split_once('=').map_or(item, |(_, level)| level);
            level.trim().parse::<LevelFilter>().is_ok()
        });
    if well_formed { value.parse::<Targets>().ok() } else { None }
}

/// Installs the global JSON subscriber; call once in `main`.
pub fn init() {
    let filter = filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
        LevelFilter::INFO,
    );
    // Logs go to stderr: a break-glass CLI prints its answer on stdout, and Lambda captures both.
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true);
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracing::Level;

    fn enabled(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn lambda_level_wins_and_fatal_is_error() {
        let t = filter(Some("FATAL"), Some("trace"), LevelFilter::INFO);
        assert!(enabled(&t, "engine", Level::ERROR));
        assert!(!enabled(&t, "engine", Level::WARN));
        let t = filter(Some("DEBUG"), None, LevelFilter::INFO);
        assert!(enabled(&t, "engine", Level::DEBUG));
        assert!(!enabled(&t, "engine", Level::TRACE));
    }

    #[test]
    fn lambda_level_may_hold_directives() {
        let t = filter(Some("info,dr_failover=debug"), None, LevelFilter::WARN);
        assert!(enabled(&t, "dr_failover", Level::DEBUG));
        assert!(enabled(&t, "aws_smithy_runtime", Level::INFO));
        assert!(!enabled(&t, "aws_smithy_runtime", Level::DEBUG));
    }

    #[test]
    fn rust_log_directives_by_target() {
        let t = filter(None, Some("warn,dr_failover=debug"), LevelFilter::INFO);
        assert!(enabled(&t, "dr_failover", Level::DEBUG));
        assert!(!enabled(&t, "aws_smithy_runtime", Level::INFO));
        assert!(enabled(&t, "aws_smithy_runtime", Level::WARN));
    }

    #[test]
    fn a_typo_falls_back_instead_of_silencing() {
        let t = filter(Some("verbose"), None, LevelFilter::INFO);
        assert!(enabled(&t, "engine", Level::INFO));
        assert!(!enabled(&t, "engine", Level::DEBUG));
        let t = filter(None, Some("engine=loud"), LevelFilter::WARN);
        assert!(enabled(&t, "engine", Level::WARN));
        assert!(!enabled(&t, "engine", Level::INFO));
    }
}
