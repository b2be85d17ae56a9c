//! The soak, bounded for CI: the code of `cargo bench -p tests --bench soak` (tests/src/soak.rs) with 60 alarm
//! deliveries and 8 replication batches, through the debug binaries, against two local Databricks workspaces
//! (tagged jobs activated and reversed), AWS calls delayed by a heavy-tailed latency, and a site document broken
//! mid-incident. The long run is `scripts/soak`; a longer one through the debug binaries is the ignored test below
//! (`cargo test -p tests --test soak_small -- --ignored --nocapture`, `SOAK_ALARMS`/`SOAK_BATCHES`, default 300/30).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::soak::{self, Config, Which};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_faults_ends_in_the_clean_runs_state_with_bounded_memory() {
    // Fixed counts (SOAK_ALARMS and SOAK_BATCHES are the long run's); SOAK_SEED replays another schedule.
    let cfg = Config { alarms: 60, batches: 8, ..Config::from_env(60, 8) };
    let report = soak::run(&cfg).await;
    println!("{}", report.table());
    assert!(report.passed(), "{}", report.problems.join("\n"));

    // The soak did what it claims: every delivery of the schedule went through both runs, faults were injected
    // and answered, the failover ran, and the state was compared section by section.
    for pass in [&report.clean, &report.faulted] {
        let invoked = |w: Which| pass.invocations.get(w.name()).copied().unwrap_or(0);
        assert!(invoked(Which::Alarm) >= cfg.alarms, "{}: {:?}", pass.label, pass.invocations);
        assert!(invoked(Which::Replication) >= cfg.batches, "{}: {:?}", pass.label, pass.invocations);
        assert!(pass.facts["promotions"] > 0, "{}: the schedule promoted nothing: {:?}", pass.label, pass.facts);
        assert!(pass.facts["manifest rows distinct"] > 0 && pass.facts["incidents"] > 0, "{:?}", pass.facts);
        // Activation ran against the local workspaces, and failbacks reversed it (the jobs' invariant is checked
        // in the run: none paused or running in both, every change reversed once the primary is active again).
        assert!(pass.facts["tagged jobs"] > 0 && pass.facts["activation changes in effect"] > 0, "{:?}", pass.facts);
        assert!(pass.facts["activations reversed by a failback"] > 0, "{:?}", pass.facts);
        for w in [Which::Alarm, Which::Replication, Which::Manual] {
            let m = &pass.memory[w.name()];
            assert!(m.warm_rss > 0 && m.end_after > m.warm_after, "{}: {} memory not sampled: {m:?}", pass.label, w.name());
        }
    }
    assert_eq!(report.clean.faults_injected(), 0);
    assert!(report.faulted.faults_injected() > 0, "no fault injected: {:?}", report.faulted);
    assert!(report.sections.len() >= 10 && report.sections.values().all(|equal| *equal), "{:?}", report.sections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes: a longer soak that prints its figures"]
async fn a_longer_soak_prints_its_figures() {
    let cfg = Config::from_env(300, 30);
    let report = soak::run(&cfg).await;
    println!("{}", report.table());
    assert!(report.passed(), "{}", report.problems.join("\n"));
}
