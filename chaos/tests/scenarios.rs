//! `cargo test -p bloodraven-chaos` runs every sim-capable scenario under scenarios/ as
//! its own test (libtest-mimic) on the sim backend, filterable by name:
//! `cargo test -p bloodraven-chaos --test scenarios -- kill-site`. The seed is
//! `BLOODRAVEN_CHAOS_SEED` or the backend's default; a failure prints the replay command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use bloodraven_chaos::backend::sim;
use bloodraven_chaos::report;
use bloodraven_chaos::runner::RunConfig;
use bloodraven_chaos::scenario::{self, BackendKind};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let seed = std::env::var("BLOODRAVEN_CHAOS_SEED")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("BLOODRAVEN_CHAOS_SEED must be a number")
        })
        .unwrap_or(sim::DEFAULT_SEED);
    let paths = if dir.is_dir() {
        scenario::discover(&dir).unwrap()
    } else {
        Vec::new()
    };
    let mut trials = Vec::new();
    for path in paths {
        let id = path.file_stem().unwrap().to_string_lossy().into_owned();
        match scenario::load(&path) {
            // A file that does not parse fails its test with the file:line:column message.
            Err(e) => {
                let message = e.to_string();
                trials.push(Trial::test(id, move || Err(Failed::from(message))));
            }
            Ok(s) if !s.supports(BackendKind::Sim) => {}
            Ok(s) => trials.push(Trial::test(id, move || {
                let ledgers = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
                let mut config = RunConfig::new(ledgers.path().join(format!("{}.ledger", s.id)));
                config.seed = Some(seed);
                let outcome = sim::run_scenario(&s, &config);
                if outcome.passed() {
                    Ok(())
                } else {
                    Err(Failed::from(report::failure_with_timeline(
                        &outcome,
                        &report::replay_command(&outcome),
                    )))
                }
            })),
        }
    }
    if trials.is_empty() {
        eprintln!(
            "scenarios: 0 sim-capable scenarios found in {}",
            dir.display()
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
