//! `delta-oracle`: checks the project's Delta replica assessment against delta-kernel-rs on random tables and
//! random partial replications (see README.md).
//!
//! For each case seed: generate a table, replicate part of it, ask the kernel for the replica's newest consistent
//! version, ask the project (`dr_delta::assess` over an in-memory copy), and classify:
//! - AGREE: the same version (or both none);
//! - FAIL: the project certifies a version the kernel cannot read (higher, or some where the kernel has none);
//! - REFUSED: the kernel reads a version the project refuses (the project's is lower, or none).

mod bench;
mod checkpoint_parquet;
mod generate;
mod kernel;
mod prng;
mod project;
mod replicate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Command-line options.
struct Options {
    cases: u64,
    seed: u64,
    from: u64,
    keep: Option<PathBuf>,
    verbose: bool,
    exhaustive: bool,
    self_test: bool,
    bench: bool,
    write: Option<PathBuf>,
}

const USAGE: &str = "usage: delta-oracle [--cases N] [--seed S] [--from F] [--keep DIR] [--verbose] [--exhaustive] [--self-test]
       delta-oracle --bench [--write DIR]
  case i (F <= i < F+N) has seed S+i; `--seed S --cases 1` replays the case of seed S exactly.
  --keep DIR leaves each case's directories in DIR/<seed>/ (primary/, replica/, primary-deleted/, ...).
  --verbose prints every case; --exhaustive asks the kernel at every version (no shortcut, slower).
  --self-test checks the generator instead: the kernel reads every version of each generated primary, and
  its scans lack only files VACUUM deleted.
  --bench writes one large table (100,000 commits, 20,000 live files with DVs; src/bench.rs) and prints the
  project's assessment of a lagging replica of it (BENCH_RUNS runs, default 5); --write DIR leaves its primary/
  and replica/ in DIR (otherwise a temporary directory under /dev/shm).";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        cases: 300,
        seed: 0,
        from: 0,
        keep: None,
        verbose: false,
        exhaustive: false,
        self_test: false,
        bench: false,
        write: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--cases" => o.cases = value("--cases")?.parse().map_err(|e| format!("--cases: {e}"))?,
            "--seed" => o.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--from" => o.from = value("--from")?.parse().map_err(|e| format!("--from: {e}"))?,
            "--keep" => o.keep = Some(PathBuf::from(value("--keep")?)),
            "--verbose" | "-v" => o.verbose = true,
            "--exhaustive" => o.exhaustive = true,
            "--self-test" => o.self_test = true,
            "--bench" => o.bench = true,
            "--write" => o.write = Some(PathBuf::from(value("--write")?)),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// How a case came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Agree,
    Fail,
    Refused,
    /// The kernel cannot read the generated primary at its newest version: a generator bug, not a finding.
    BadTable,
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.bench {
        return match bench::run(opts.write.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if opts.write.is_some() {
        eprintln!("--write goes with --bench\n{USAGE}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let kernel = kernel::Kernel::new();
    let started = Instant::now();
    let (mut agree, mut fail, mut refused, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let mut coverage: BTreeMap<String, u64> = BTreeMap::new();
    for i in opts.from..opts.from + opts.cases {
        let seed = opts.seed.wrapping_add(i);
        let temp;
        let case_dir = match &opts.keep {
            Some(dir) => {
                let d = dir.join(seed.to_string());
                // A kept case is regenerated from scratch: the generator writes into empty directories.
                let _ = std::fs::remove_dir_all(&d);
                d
            }
            None => {
                // Memory-backed when there is one: a case writes and copies a few thousand small files, which
                // costs several times the rest on a shared disk.
                let shm = Path::new("/dev/shm");
                temp = if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
                    tempfile::tempdir_in(shm)
                } else {
                    tempfile::tempdir()
                }
                .expect("a temp dir");
                temp.path().to_path_buf()
            }
        };
        if opts.self_test {
            if self_test(seed, &case_dir, &kernel) {
                agree += 1;
            } else {
                bad += 1;
            }
            continue;
        }
        let verdict = run_case(seed, &case_dir, &kernel, &runtime, &opts, &mut coverage);
        match verdict {
            Verdict::Agree => agree += 1,
            Verdict::Fail => fail += 1,
            Verdict::Refused => refused += 1,
            Verdict::BadTable => bad += 1,
        }
    }
    println!(
        "summary: cases {} agree {agree} fail {fail} refused {refused} bad-table {bad} elapsed {:.1}s (seeds {}..{})",
        opts.cases,
        started.elapsed().as_secs_f64(),
        opts.seed.wrapping_add(opts.from),
        opts.seed.wrapping_add(opts.from + opts.cases),
    );
    let (refusals, covered): (Vec<_>, Vec<_>) = coverage.iter().partition(|(k, _)| k.starts_with("REFUSED: "));
    let line = |items: Vec<(&String, &u64)>, strip: &str| {
        items.iter().map(|(k, v)| format!("{} {v}", k.trim_start_matches(strip))).collect::<Vec<_>>().join(", ")
    };
    if !refusals.is_empty() {
        println!("refused by kind: {}", line(refusals, "REFUSED: "));
    }
    if !covered.is_empty() {
        println!("coverage (cases with): {}", line(covered, ""));
    }
    if fail > 0 || bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Generates, replicates and compares one case; prints what is not an agreement.
/// A short explanation of a refusal, for the summary: the project's bound on the bases it tries, or a kernel
/// snapshot whose log segment has no start (no commit 0 and no complete checkpoint at or below it: the kernel replays a
/// contiguous suffix as the whole history, as its `log_segment_files` says it does without a `_last_checkpoint`).
fn refusal_kind(reason: &str, replica: &Path, kernel_version: Option<u64>) -> &'static str {
    let Some(v) = kernel_version else { return "other" };
    let log = kernel::log_files(replica);
    // `N.checkpoint.<part>.<parts>.parquet`: (part, parts).
    let parts_of = |name: &str| -> Option<(u64, u64)> {
        let mut it = name.split('.').skip(2);
        let part = it.next()?.parse().ok()?;
        let of = it.next()?.parse().ok()?;
        Some((part, of))
    };
    // A multi-part checkpoint is a start only with all its parts.
    let complete = |version: u64, of: u64| {
        log.iter().filter(|(w, n)| *w == version && parts_of(n).is_some_and(|p| p.1 == of)).count() as u64 == of
    };
    let has_start = log.iter().any(|(version, name)| {
        (*version == 0 && name.ends_with(".json"))
            || (*version <= v && name.contains(".checkpoint.") && parts_of(name).is_none_or(|(_, of)| complete(*version, of)))
    });
    if !has_start {
        "kernel reads a log without its start"
    } else if reason.contains("not assessed") {
        "project tries only its newest bases"
    } else {
        "other"
    }
}

/// The generator's self-test for one seed (see `--self-test`); prints what is wrong.
fn self_test(seed: u64, case_dir: &Path, kernel: &kernel::Kernel) -> bool {
    let g = generate::generate(seed, case_dir);
    let primary = case_dir.join("primary");
    let deleted = case_dir.join("primary-deleted");
    for v in g.log_start..=g.newest {
        let bad = match kernel.check(&primary, v) {
            Ok(()) => None,
            Err(kernel::Problem::Missing(rel)) if deleted.join(&rel).exists() && v < g.newest => None,
            Err(e) => Some(e),
        };
        if let Some(e) = bad {
            println!("BAD-TABLE seed {seed} version {v}: {e} ({}; checkpoints {:?})", g.features, g.checkpoints);
            return false;
        }
    }
    true
}

/// Generates, replicates and compares one case; prints what is not an agreement.
fn run_case(
    seed: u64,
    case_dir: &Path,
    kernel: &kernel::Kernel,
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    coverage: &mut BTreeMap<String, u64>,
) -> Verdict {
    let verbose = opts.verbose;
    let t0 = Instant::now();
    let generated = generate::generate(seed, case_dir);
    let primary = case_dir.join("primary");
    let replica = case_dir.join("replica");
    let replication = replicate::replicate(seed, case_dir, &replica);
    for t in &generated.tags {
        *coverage.entry((*t).to_owned()).or_default() += 1;
    }
    for (on, name) in [
        (replication.stale_last_checkpoint.is_some(), "stale _last_checkpoint"),
        (replication.kept_deleted > 0, "replica keeps deleted files"),
    ] {
        if on {
            *coverage.entry(name.to_owned()).or_default() += 1;
        }
    }
    // The generated table must itself be readable at its newest version, or the case proves nothing.
    if let Err(e) = kernel.check(&primary, generated.newest) {
        println!("BAD-TABLE seed {seed}: the kernel cannot read the primary at {}: {e}", generated.newest);
        return Verdict::BadTable;
    }
    let t1 = Instant::now();
    let adds = (!opts.exhaustive).then(|| generate::read_adds(case_dir));
    let k = kernel.consistent(&replica, adds.as_ref());
    let t2 = Instant::now();
    let report = rt.block_on(project::project_report(&primary, &replica));
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_millis();
    let timing = format!("generate+replicate {} ms, kernel {} ms, project {} ms", ms(t0, t1), ms(t1, t2), ms(t2, t3));
    let (p, status, reason) = match &report {
        Ok(r) => (r.replica_consistent_version, format!("{:?}", r.status), r.reason.clone()),
        Err(e) => (None, "error".to_owned(), e.clone()),
    };
    let verdict = match (p, k.consistent) {
        (a, b) if a == b => Verdict::Agree,
        (Some(_), None) => Verdict::Fail,
        (Some(a), Some(b)) if a > b => Verdict::Fail,
        _ => Verdict::Refused,
    };
    let show = |v: Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
    let table = format!(
        "table: {} versions {}..={} checkpoints {:?}",
        generated.features, generated.log_start, generated.newest, generated.checkpoints
    );
    let dropped: Vec<&str> = replication.dropped.iter().map(String::as_str).collect();
    let repl = format!(
        "replication: {} dropped {} {:?}{} stale _last_checkpoint {} kept-deleted {}",
        replication.mode,
        dropped.len(),
        &dropped[..dropped.len().min(12)],
        if dropped.len() > 12 { " ..." } else { "" },
        show(replication.stale_last_checkpoint),
        replication.kept_deleted
    );
    match verdict {
        Verdict::Fail => {
            println!("FAIL seed {seed}: project {} > kernel {}", show(p), show(k.consistent));
            println!("  kernel: newest {} problem: {}", show(k.newest), k.newest_problem.as_deref().unwrap_or("-"));
            println!("  project: {status}: {reason}");
            println!("  {repl}");
            println!("  {table}");
        }
        Verdict::Refused => {
            let why = refusal_kind(&reason, &replica, k.consistent);
            *coverage.entry(format!("REFUSED: {why}")).or_default() += 1;
            println!("REFUSED seed {seed}: project {} < kernel {} [{why}] ({status}: {reason})", show(p), show(k.consistent));
            if verbose {
                println!("  kernel: newest {} problem: {}", show(k.newest), k.newest_problem.as_deref().unwrap_or("-"));
                println!("  {repl}");
                println!("  {table}");
            }
        }
        _ if verbose => {
            println!(
                "AGREE seed {seed}: {} ({status}) kernel tried {} versions, skipped {}; {timing}",
                show(p),
                k.tried,
                k.skipped
            );
            println!("  {repl}");
            println!("  {table}");
        }
        _ => {}
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every version the generated log still holds opens in the kernel, and its scan lacks nothing but files
    /// VACUUM deleted: the checkpoints (every kind) and commits are what a reader accepts.
    #[test]
    fn generated_tables_are_readable_at_every_version() {
        let kernel = kernel::Kernel::new();
        for seed in [3, 4, 9, 14, 17] {
            let dir = tempfile::tempdir().expect("a temp dir");
            let g = generate::generate(seed, dir.path());
            let primary = dir.path().join("primary");
            let deleted = dir.path().join("primary-deleted");
            for v in g.log_start..=g.newest {
                match kernel.check(&primary, v) {
                    Ok(()) => {}
                    Err(kernel::Problem::Missing(rel)) => {
                        assert!(deleted.join(&rel).exists(), "seed {seed} version {v}: {rel} missing, not vacuumed")
                    }
                    Err(e) => panic!("seed {seed} version {v} ({}): {e}", g.features),
                }
            }
            assert!(kernel.check(&primary, g.newest).is_ok(), "seed {seed}: newest version unreadable");
        }
    }

    /// A full copy is consistent at the primary's newest version; without the newest commit's data file, the
    /// kernel oracle goes below the commit that added it, with and without the shortcut.
    #[test]
    fn the_oracle_sees_a_missing_data_file() {
        let kernel = kernel::Kernel::new();
        let dir = tempfile::tempdir().expect("a temp dir");
        let g = generate::generate(11, dir.path());
        let primary = dir.path().join("primary");
        assert_eq!(kernel.consistent(&primary, None).consistent, Some(g.newest));
        let adds = generate::read_adds(dir.path());
        // The newest add of a data file still in the table (for this seed, live at the newest version).
        let (file, added) = adds
            .iter()
            .filter(|(f, _)| f.ends_with(".parquet") && !f.starts_with("_change_data") && primary.join(f).exists())
            .filter_map(|(f, vs)| vs.last().map(|v| (f.clone(), *v)))
            .max_by_key(|(_, v)| *v)
            .expect("a data file");
        std::fs::remove_file(primary.join(&file)).expect("remove a data file");
        for shortcut in [None, Some(&adds)] {
            let answer = kernel.consistent(&primary, shortcut);
            assert!(answer.consistent.is_none_or(|v| v < added), "{file} added at {added}: {answer:?}");
        }
    }

    /// A seed replays its case exactly: the same table and the same replication.
    #[test]
    fn a_seed_replays_its_case() {
        let run = |seed| {
            let dir = tempfile::tempdir().expect("a temp dir");
            let g = generate::generate(seed, dir.path());
            let r = replicate::replicate(seed, dir.path(), &dir.path().join("replica"));
            // The newest commit byte for byte: its uuids and times come from the seeded generator too.
            let newest = dir.path().join(format!("primary/_delta_log/{:020}.json", g.newest));
            let log = std::fs::read_to_string(newest).expect("the newest commit");
            (g.newest, g.checkpoints, r.dropped, r.mode, log)
        };
        assert_eq!(run(21), run(21));
    }
}
