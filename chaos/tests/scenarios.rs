//! `cargo test -p bloodraven-chaos` runs every sim-capable scenario under scenarios/ as
//! its own test (libtest-mimic), filterable by name: `cargo test -p bloodraven-chaos
//! --test scenarios -- kill-site`.
//!
//! Until bloodraven-sim's World exists there is no backend to run them on: each
//! scenario still becomes a test (so it is listed and filterable), its file is parsed
//! for real, and the test is reported as ignored with the reason, never as passed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use bloodraven_chaos::backend::SIM_NOT_BUILT;
use bloodraven_chaos::scenario::{self, BackendKind};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let paths = scenario::discover(&dir).unwrap();
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
            Ok(_) => {
                // The sim backend is not built: the trial exists and is ignored, with
                // the reason printed once below. Running it must not report a pass.
                trials.push(
                    Trial::test(id, || Err(Failed::from(SIM_NOT_BUILT))).with_ignored_flag(true),
                );
            }
        }
    }
    if trials.is_empty() {
        eprintln!(
            "scenarios: 0 sim-capable scenarios found in {}",
            dir.display()
        );
    } else if trials.iter().any(Trial::has_ignored_flag) {
        eprintln!("scenarios: sim-capable scenarios are ignored: {SIM_NOT_BUILT}");
    }
    libtest_mimic::run(&args, trials).exit();
}
