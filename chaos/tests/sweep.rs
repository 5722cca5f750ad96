//! CI's seed sweep: `cargo test -p bloodraven-chaos --test sweep` runs the seeds of
//! [`sweep::ci_seeds`] (the shortest run from seed 1 that uses every kind of
//! disruption), one test per seed, exactly as `make chaos-sweep` runs them: the
//! seed's random schedule on the sim backend with both invariants on. A failure
//! prints the first failure, the timeline and the replay command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use bloodraven_chaos::backend::sim;
use bloodraven_chaos::report;
use bloodraven_chaos::runner::RunConfig;
use bloodraven_chaos::sweep;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let trials = sweep::ci_seeds()
        .map(|seed| {
            let dir = dir.clone();
            Trial::test(format!("sweep-seed-{seed:03}"), move || {
                let scenario = sweep::scenario(seed, &dir).map_err(|e| e.to_string())?;
                let ledgers = tempfile::tempdir().map_err(|e| e.to_string())?;
                let mut config =
                    RunConfig::new(ledgers.path().join(format!("sweep-{seed}.ledger")));
                config.seed = Some(seed);
                let outcome = sim::run_scenario(&scenario, &config);
                if outcome.passed() {
                    return Ok(());
                }
                Err(Failed::from(report::failure_with_timeline(
                    &outcome,
                    &sweep::replay_command(seed),
                )))
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
