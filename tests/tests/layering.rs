//! The workspace's layering, checked with Cargo's own view of it (`cargo tree`), so that it cannot break
//! silently:
//!
//! ```text
//! functions/*  ->  app[lambda]  ->  aws, dr-databricks (the adapters)  ->  dr-ports  ->  domain
//! cli (dr)     ->  app          ->  engine (the use cases: commands, check, status, drill, sync)
//!                                     -> dr-failover -> dr-workspace -> dr-delta, dr-replication -> dr-ports -> domain
//! ```
//!
//! - the crate graph itself is pinned ([`the_crate_graph_is_the_documented_one`]): one crate per subsystem
//!   (`dr-failover`, `dr-workspace`, `dr-delta`, `dr-replication`) over the core (`domain`, `dr-ports`), the use
//!   cases above them in `engine`;
//! - `domain` is pure: no async runtime, no AWS SDK, no Lambda runtime, no HTTP stack, no other layer; so are the
//!   subsystems' `rules` modules (checked in the sources: [`the_subsystems_rules_are_pure`]);
//! - the subsystems and `engine` name no SDK and no Lambda type: they reach AWS through the ports;
//! - `aws` is the only crate that names `aws_sdk_*` (checked in the sources too) and does not know Lambda; the
//!   crates above it depend on no SDK crate directly (`dr` makes its operator's calls, STS and `--function`'s
//!   Lambda Invoke, through `aws`'s `operator` feature);
//! - the functions do not link the operator's Lambda client (that feature is `dr`'s only), so that their roles
//!   need nothing for it;
//! - the break-glass CLI does not link the Lambda runtime (`app` without its `lambda` feature).
//!
//! Workspace crates can only point downwards anyway (Cargo refuses cycles); these checks pin the external
//! dependencies of each layer, which is what a convention alone would let slip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The names of every crate `package` depends on for its normal (non-dev, non-build) code, transitively.
fn normal_dependencies(package: &str, features: &[&str]) -> BTreeSet<String> {
    tree(package, features, None)
}

/// The names of the crates `package` names itself in its `[dependencies]`.
fn direct_dependencies(package: &str) -> BTreeSet<String> {
    tree(package, &[], Some(1))
}

/// `cargo tree` of `package`'s normal dependencies, to `depth` if given.
fn tree(package: &str, features: &[&str], depth: Option<u32>) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root()).args(["tree", "-p", package, "-e", "normal", "--prefix", "none", "-f", "{p}"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    if let Some(depth) = depth {
        cmd.args(["--depth", &depth.to_string()]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let names: BTreeSet<String> =
        text.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| *n != package).map(str::to_owned).collect();
    assert!(!names.is_empty() || package == "domain", "cargo tree printed nothing for {package}");
    names
}

/// The crates of `deps` matching any of `forbidden` (exact names, or prefixes ending in `*`).
fn offending(deps: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    deps.iter()
        .filter(|d| {
            forbidden.iter().any(|f| match f.strip_suffix('*') {
                Some(prefix) => d.starts_with(prefix),
                None => d.as_str() == *f,
            })
        })
        .cloned()
        .collect()
}

const SDK: &[&str] = &["aws-config", "aws-sdk-*", "aws-smithy-*", "aws-runtime", "aws-sigv4", "aws-credential-types"];
const LAMBDA: &[&str] = &["lambda_runtime", "lambda_runtime_api_client"];
const IO: &[&str] = &["tokio", "hyper", "hyper-util", "reqwest", "rustls", "futures-util"];

#[test]
fn domain_is_pure() {
    let deps = normal_dependencies("domain", &[]);
    let forbidden: Vec<&str> =
        SDK.iter().chain(LAMBDA).chain(IO).chain(&["dr-*", "engine", "aws", "app", "tracing"]).copied().collect();
    let bad = offending(&deps, &forbidden);
    assert!(bad.is_empty(), "domain must stay pure (no I/O, SDK, Lambda or upper layer), but depends on {bad:?}");
    // The check itself can fail: the same rules flag the engine, which does use tokio.
    assert!(!offending(&normal_dependencies("engine", &[]), IO).is_empty(), "the IO list no longer matches anything");
}

/// The library crates below the adapters: the core's ports, the subsystems and the use cases.
const LAYERS: [&str; 6] = ["dr-ports", "dr-delta", "dr-replication", "dr-workspace", "dr-failover", "engine"];

#[test]
fn the_subsystems_and_the_use_cases_name_no_sdk_and_no_lambda() {
    for package in LAYERS {
        let deps = normal_dependencies(package, &[]);
        let forbidden: Vec<&str> = SDK.iter().chain(LAMBDA).chain(&["aws", "app"]).copied().collect();
        let bad = offending(&deps, &forbidden);
        assert!(bad.is_empty(), "{package} must reach AWS only through the ports, but depends on {bad:?}");
        assert!(deps.contains("domain"), "{package}: {deps:?}");
    }
}

/// The workspace's own crates among `package`'s direct dependencies.
fn own_dependencies(package: &str) -> BTreeSet<String> {
    const OWN: [&str; 10] = [
        "domain",
        "dr-ports",
        "dr-delta",
        "dr-replication",
        "dr-workspace",
        "dr-failover",
        "dr-databricks",
        "engine",
        "aws",
        "app",
    ];
    direct_dependencies(package).into_iter().filter(|d| OWN.contains(&d.as_str())).collect()
}

#[test]
fn the_crate_graph_is_the_documented_one() {
    // Each crate and the workspace crates it may name: a subsystem takes the core and what it reads of the
    // subsystems below it (the DR matrix's readiness reads the Delta and replication evidence; a failover
    // snapshots every subsystem's files), never one above it.
    let expected: [(&str, &[&str]); 9] = [
        ("domain", &[]),
        ("dr-ports", &["domain"]),
        ("dr-delta", &["domain", "dr-ports"]),
        ("dr-replication", &["domain", "dr-ports"]),
        ("dr-workspace", &["domain", "dr-delta", "dr-ports", "dr-replication"]),
        ("dr-failover", &["domain", "dr-delta", "dr-ports", "dr-replication", "dr-workspace"]),
        ("engine", &["domain", "dr-delta", "dr-failover", "dr-ports", "dr-replication", "dr-workspace"]),
        ("dr-databricks", &["domain", "dr-ports"]),
        ("aws", &["domain", "dr-ports"]),
    ];
    for (package, allowed) in expected {
        let own = own_dependencies(package);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(own, allowed, "{package}'s workspace dependencies changed: update the layering (README, this test)");
    }
}

#[test]
fn the_subsystems_rules_are_pure() {
    // A subsystem's `rules` module holds its decisions as plain functions: no async, no port, no I/O, and no
    // path into the orchestration beside it.
    let root = repo_root();
    let mut checked = 0;
    let mut offenders = Vec::new();
    for crate_dir in ["shared/delta", "shared/replication", "shared/workspace", "shared/failover"] {
        for file in rust_files(&root.join(crate_dir).join("src/rules")) {
            let text = std::fs::read_to_string(&file).unwrap();
            checked += 1;
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let outside = code.match_indices("crate::").any(|(i, _)| !code[i..].starts_with("crate::rules"));
                let io = ["async ", "tokio", "dr_ports", "futures_util", "tracing::"].iter().any(|w| code.contains(w));
                if outside || io {
                    offenders.push(format!("{}:{}: {}", file.strip_prefix(&root).unwrap().display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} rules files found: the search no longer looks in the right place");
    assert!(offenders.is_empty(), "rules must stay pure:\n{}", offenders.join("\n"));
}

#[test]
fn the_databricks_client_names_no_sdk_and_no_lambda() {
    // An adapter of the workspace ports over HTTP, outside `aws`: its secrets come through the SecretStore port.
    let deps = normal_dependencies("dr-databricks", &[]);
    let forbidden: Vec<&str> = SDK.iter().chain(LAMBDA).chain(&["aws", "app", "engine"]).copied().collect();
    let bad = offending(&deps, &forbidden);
    assert!(bad.is_empty(), "the Databricks client must not depend on {bad:?}");
    assert!(deps.contains("hyper-rustls") && deps.contains("dr-ports"), "{deps:?}");
}

#[test]
fn aws_adapters_do_not_know_lambda() {
    let deps = normal_dependencies("aws", &[]);
    let forbidden: Vec<&str> = LAMBDA.iter().chain(&["app"]).copied().collect();
    let bad = offending(&deps, &forbidden);
    assert!(bad.is_empty(), "the AWS adapters must not depend on {bad:?}");
    assert!(deps.contains("aws-sdk-s3") && deps.contains("dr-ports"), "{deps:?}");
}

#[test]
fn the_break_glass_cli_does_not_link_the_lambda_runtime() {
    let deps = normal_dependencies("cli", &[]);
    let bad = offending(&deps, LAMBDA);
    assert!(bad.is_empty(), "dr must run where Lambda does not: it depends on {bad:?}");
    // ... while the functions do, through app's `lambda` feature (proof that the check sees the feature).
    assert!(!offending(&normal_dependencies("manual-trigger", &[]), LAMBDA).is_empty());
}

#[test]
fn the_crates_above_the_adapters_name_no_sdk_crate() {
    for package in ["app", "cli", "manual-trigger", "health-alarm", "replication-failure"] {
        let deps = direct_dependencies(package);
        let bad = offending(&deps, SDK);
        assert!(bad.is_empty(), "{package} must reach AWS through the aws crate, but depends on {bad:?} itself");
        assert!(deps.contains("aws") || deps.contains("app"), "{package}: {deps:?}");
    }
}

#[test]
fn only_dr_links_the_operators_lambda_client() {
    for function in ["manual-trigger", "health-alarm", "replication-failure"] {
        let deps = normal_dependencies(function, &[]);
        assert!(
            !deps.contains("aws-sdk-lambda"),
            "{function} links aws-sdk-lambda: the aws crate's `operator` feature is dr's only"
        );
    }
    // ... while dr does, through the aws crate (proof that the check sees the feature).
    assert!(normal_dependencies("cli", &[]).contains("aws-sdk-lambda"));
}

/// Rust files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn only_the_aws_crate_names_sdk_types() {
    let root = repo_root();
    let mut offenders = Vec::new();
    let mut seen_in_aws = false;
    for dir in ["shared", "functions", "cli/src"] {
        for file in rust_files(&root.join(dir)) {
            if std::fs::read_to_string(&file).unwrap().contains("aws_sdk_") {
                if file.starts_with(root.join("shared/aws")) {
                    seen_in_aws = true;
                } else {
                    offenders.push(file.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(seen_in_aws, "the search found no SDK type even in shared/aws: it no longer searches the right files");
    assert!(offenders.is_empty(), "only shared/aws may name aws_sdk_* types: {offenders:?}");
}
