//! The `bloodraven-chaos` command line: list, run, run-all, recover. Wires options to
//! the scenario loader, a backend, the runner and the reports; holds no logic of its own.
//! About 700 lines because it is one table of verbs and their options with the help
//! text users read; each verb's work lives in the module it calls.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use futures::StreamExt;

use crate::backend::k3d::{K3dBackend, K3dConfig};
use crate::backend::{BackendError, SharedBackend, sim};
use crate::console::{errln, out, outln};
use crate::ledger::{self, LedgerError};
use crate::report::{self, ReportError};
use crate::runner::{self, RunConfig, ScenarioOutcome};
use crate::scenario::{self, BackendKind, Scenario, ScenarioError};
use crate::sweep;

const ABOUT: &str = "Run Bloodraven's chaos scenarios against a simulated or a live cluster.";

const LONG_ABOUT: &str = "\
Run Bloodraven's chaos scenarios against a simulated or a live cluster.

A scenario is a YAML file, scenarios/NN-name.yaml; its id is the file name without
.yaml. It applies a fixture, injects faults (kill-site, cordon, network-partition,
partition between sites, node-crash, ...), and asserts on the MysqlFailoverGroup's
status, Kubernetes Events and the operator's /metrics, while an optional counter
workload checks that no acknowledged write is lost and that two sites are never
writable at once. The format is documented in docs/scenarios.md.

Every fault is written, with its undo, to a ledger (REPORT_DIR/ledgers/ID.ledger)
before it is applied. If the runner itself dies, `bloodraven-chaos recover` undoes
what it left behind.";

const AFTER_HELP: &str = "\
Examples:
  bloodraven-chaos list
  bloodraven-chaos list --tag failover
  bloodraven-chaos run 02-kill-site-iad --backend k3d
  bloodraven-chaos run ./my-experiment.yaml --backend k3d
  bloodraven-chaos run-all --junit reports/junit.xml --parallel 2
  bloodraven-chaos run 05-network-partition-iad --seed 1234     # replay a sim failure
  bloodraven-chaos recover                                      # after a runner crash
  bloodraven-chaos recover --ledger reports/ledgers/04-cordon-iad.ledger
  bloodraven-chaos fault 'cordon: iad'                          # leave one fault in effect
  bloodraven-chaos sweep --seeds 200                            # random fault schedules
  bloodraven-chaos sweep --first 17 --seeds 1                   # replay one sweep seed
  bloodraven-chaos report --sweep-seeds 50                      # writes docs/report.md

Exit status: 0 when every scenario passed, 1 when any failed, 2 when the command
could not run (bad scenario file, backend unavailable, bad options).";

#[derive(Debug, Parser)]
#[command(name = "bloodraven-chaos", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where scenarios live; `fixture: NAME` reads DIR/fixtures/NAME.yaml.
    #[arg(long, global = true, default_value = "scenarios", value_name = "DIR")]
    pub scenarios_dir: PathBuf,
    /// Where the JSON report and the fault ledgers go.
    #[arg(long, global = true, default_value = "reports", value_name = "DIR")]
    pub report_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List scenarios: id, backends, tags and description.
    List {
        /// Only scenarios with this tag (repeat for any of several).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Run the given scenarios (ids from --scenarios-dir, or paths to YAML files).
    Run {
        #[arg(required = true, value_name = "ID|PATH")]
        scenarios: Vec<String>,
        #[command(flatten)]
        options: RunOptions,
    },
    /// Run every scenario that supports the backend (optionally only some tags).
    RunAll {
        #[arg(long)]
        tag: Vec<String>,
        #[command(flatten)]
        options: RunOptions,
    },
    /// Random fault schedules over the playground, one per seed, on sim with both
    /// invariants on; prints each failing seed with its replay command.
    Sweep {
        /// How many seeds.
        #[arg(long, default_value_t = 50, value_name = "N")]
        seeds: u64,
        /// The first seed (seeds FIRST..FIRST+N).
        #[arg(long, default_value_t = 1, value_name = "SEED")]
        first: u64,
        /// Worlds to run at once (at least 1).
        #[arg(long, default_value_t = 2, value_name = "N", value_parser = at_least_one)]
        parallel: usize,
        /// Print the schedule (a scenario file) of each seed instead of running it.
        #[arg(long)]
        show: bool,
    },
    /// Run every sim scenario and a sweep, and write the measured report (Markdown).
    Report {
        /// Seeds for the sweep part.
        #[arg(long, default_value_t = 50, value_name = "N")]
        sweep_seeds: u64,
        /// Worlds to run at once (at least 1).
        #[arg(long, default_value_t = 2, value_name = "N", value_parser = at_least_one)]
        parallel: usize,
        /// Where to write the report.
        #[arg(long, default_value = "docs/report.md", value_name = "PATH")]
        out: PathBuf,
    },
    /// Undo faults a crashed run left in effect, newest first, from its ledger(s).
    Recover {
        /// One ledger; default: every ledger under REPORT_DIR/ledgers with faults left.
        #[arg(long, value_name = "PATH")]
        ledger: Option<PathBuf>,
        /// kubeconfig context of the live cluster.
        #[arg(long, default_value = "k3d-bloodraven")]
        k3d_context: String,
    },
    /// Inject one fault into the live cluster and leave it in effect: the playground's
    /// chaos.sh. The fault and its undo go to REPORT_DIR/ledgers/playground.ledger
    /// first, so `recover` undoes it together with anything a crashed run left.
    Fault {
        /// The fault as a scenario step writes it: 'kill-site: iad', 'cordon: pdx',
        /// 'network-partition: iad', 'kill-dragonfly: iad', ... (docs/scenarios.md).
        #[arg(value_name = "FAULT")]
        fault: String,
        /// Namespace of the failover group.
        #[arg(long, default_value = "bloodraven-playground")]
        namespace: String,
        /// kubeconfig context of the live cluster.
        #[arg(long, default_value = "k3d-bloodraven")]
        k3d_context: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// sim: the deterministic simulated cluster; k3d: a live playground cluster.
    #[arg(long, value_enum, default_value_t = BackendKind::Sim)]
    pub backend: BackendKind,
    /// The simulation seed; a failing sim run prints the one to replay it with.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write JUnit XML here (one testsuite, one testcase per scenario).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Scenarios to run at once, at least 1 (sim only; k3d has one cluster and runs one
    /// at a time).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = at_least_one)]
    pub parallel: usize,
    /// Stop starting new scenarios after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// kubeconfig context of the live cluster (k3d backend).
    #[arg(long, default_value = "k3d-bloodraven")]
    pub k3d_context: String,
}

/// `--parallel`: a count of worlds or scenarios at once; 0 would run nothing.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (0 would run nothing)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

/// Why a command could not do its work (exit code 2); a scenario that fails is not one.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("invalid scenario file(s):\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    InvalidScenarios(Vec<ScenarioError>),
    #[error("{id} does not run on {backend} (backends: {backends:?})")]
    Unsupported {
        id: String,
        backend: BackendKind,
        backends: Vec<BackendKind>,
    },
    #[error(
        "the sim backend has no shared cluster to connect to: every run builds its own simulated world"
    )]
    NoSharedSimCluster,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the sweep generated an invalid schedule: {0}")]
    SweepSchedule(#[source] ScenarioError),
    #[error("serializing the sweep summary: {0}")]
    SweepJson(#[from] serde_json::Error),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("no scenario in {} has tag(s) {}; tags in use: {}", dir.display(), unknown.join(", "), known.join(", "))]
    UnknownTags {
        unknown: Vec<String>,
        dir: PathBuf,
        known: Vec<String>,
    },
    #[error("{option}: {reason}")]
    BadOption { option: String, reason: String },
}

/// The seeds `first..first + seeds`, refused when the last one would pass `u64::MAX`.
fn seed_range(first: u64, seeds: u64) -> Result<std::ops::Range<u64>, CliError> {
    let end = first
        .checked_add(seeds)
        .ok_or_else(|| CliError::BadOption {
            option: format!("--first {first} --seeds {seeds}"),
            reason: format!(
                "the seeds would run past {}; the largest --first for {seeds} seed(s) is {}",
                u64::MAX,
                u64::MAX - seeds
            ),
        })?;
    Ok(first..end)
}

/// Parses arguments and runs; the binary's whole `main`.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_cli(cli).await {
        Ok(code) => code,
        Err(message) => {
            errln!("bloodraven-chaos: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run_cli(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::List { tag } => {
            let scenarios = load_dir(&cli.scenarios_dir, &tag)?;
            if scenarios.is_empty() {
                outln!("no scenarios in {}", cli.scenarios_dir.display());
            }
            for s in &scenarios {
                let backends: Vec<String> = s.backends.iter().map(ToString::to_string).collect();
                outln!(
                    "{:<36} [{}] {{{}}}  {}",
                    s.id,
                    backends.join(","),
                    s.tags.join(","),
                    s.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { scenarios, options } => {
            let loaded = scenarios
                .iter()
                .map(|arg| scenario::load(&resolve(&cli.scenarios_dir, arg)))
                .collect::<Result<Vec<_>, _>>()?;
            run_many(loaded, &options, &cli.report_dir).await
        }
        Command::RunAll { tag, options } => {
            let all = load_dir(&cli.scenarios_dir, &tag)?;
            let selected: Vec<Scenario> = all
                .into_iter()
                .filter(|s| s.supports(options.backend))
                .collect();
            if selected.is_empty() {
                outln!(
                    "no scenarios for backend {} in {}",
                    options.backend,
                    cli.scenarios_dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            run_many(selected, &options, &cli.report_dir).await
        }
        Command::Recover {
            ledger,
            k3d_context,
        } => recover(ledger, &cli.report_dir, &k3d_context).await,
        Command::Fault {
            fault,
            namespace,
            k3d_context,
        } => {
            let fault = parse_fault(&fault)?;
            let backend = connect(BackendKind::K3d, &k3d_context).await?;
            inject_and_keep(
                &fault,
                &namespace,
                &playground_ledger(&cli.report_dir),
                &backend,
            )
            .await
        }
        Command::Sweep {
            seeds,
            first,
            parallel,
            show,
        } => {
            let range = seed_range(first, seeds)?;
            if show {
                for seed in range {
                    outln!("# seed {seed}\n{}", sweep::schedule(seed));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let summary = run_sweep(first, seeds, parallel, &cli.scenarios_dir, &cli.report_dir)?;
            Ok(if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Report {
            sweep_seeds,
            parallel,
            out,
        } => {
            let all = load_dir(&cli.scenarios_dir, &[])?;
            let selected: Vec<Scenario> = all
                .into_iter()
                .filter(|s| s.supports(BackendKind::Sim))
                .collect();
            let options = RunOptions {
                backend: BackendKind::Sim,
                seed: None,
                junit: None,
                parallel,
                fail_fast: false,
                k3d_context: String::new(),
            };
            let wall = std::time::Instant::now();
            let (code, outcomes) = run_many_outcomes(selected, &options, &cli.report_dir).await?;
            let suite_wall_ms = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
            let summary = run_sweep(
                1,
                sweep_seeds,
                parallel,
                &cli.scenarios_dir,
                &cli.report_dir,
            )?;
            let text = report::markdown(
                &outcomes,
                suite_wall_ms,
                &summary,
                &report::Machine::detect(),
            );
            report::write_text(&out, &text)?;
            outln!("report: {}", out.display());
            Ok(if code == ExitCode::SUCCESS && summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `02-kill-site-iad` -> scenarios/02-kill-site-iad.yaml; anything that exists as a path
/// (or ends in .yaml) is taken as a path.
fn resolve(dir: &Path, arg: &str) -> PathBuf {
    let as_path = PathBuf::from(arg);
    if as_path.exists() || arg.ends_with(".yaml") || arg.ends_with(".yml") {
        as_path
    } else {
        dir.join(format!("{arg}.yaml"))
    }
}

fn load_dir(dir: &Path, tags: &[String]) -> Result<Vec<Scenario>, CliError> {
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for path in scenario::discover(dir)? {
        match scenario::load(&path) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::InvalidScenarios(errors));
    }
    // A tag no scenario has is a typo, not a request to run nothing and pass.
    let known: std::collections::BTreeSet<&str> = scenarios
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    let unknown: Vec<String> = tags
        .iter()
        .filter(|t| !known.contains(t.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(CliError::UnknownTags {
            unknown,
            dir: dir.to_owned(),
            known: known.into_iter().map(str::to_string).collect(),
        });
    }
    Ok(scenarios
        .into_iter()
        .filter(|s| tags.is_empty() || s.tags.iter().any(|t| tags.contains(t)))
        .collect())
}

async fn connect(kind: BackendKind, k3d_context: &str) -> Result<SharedBackend, CliError> {
    match kind {
        // Each sim run builds its own World on its own thread (see `run_one`).
        BackendKind::Sim => Err(CliError::NoSharedSimCluster),
        BackendKind::K3d => {
            let config = K3dConfig {
                context: k3d_context.to_owned(),
                ..K3dConfig::default()
            };
            Ok(Arc::new(K3dBackend::connect(config).await?) as SharedBackend)
        }
    }
}

fn run_sweep(
    first: u64,
    seeds: u64,
    parallel: usize,
    scenarios_dir: &Path,
    report_dir: &Path,
) -> Result<sweep::SweepSummary, CliError> {
    let range = seed_range(first, seeds)?;
    errln!(
        "sweep: seeds {}..{} on {parallel} thread(s)",
        range.start,
        range.end
    );
    let progress = |r: &sweep::SeedResult, outcome: &ScenarioOutcome| {
        if r.passed {
            errln!(
                "sweep: seed {} ok ({:.1}s wall)",
                r.seed,
                r.wall_ms as f64 / 1000.0
            );
        } else {
            let failures: String = outcome.failures.iter().map(ToString::to_string).collect();
            errln!(
                "sweep: seed {} FAILED\n{failures}{}\n{}\nreplay: {}\n",
                r.seed,
                bloodraven_sim::rng::seed_line(r.seed),
                r.seam_faults,
                r.replay
            );
        }
    };
    let summary = sweep::run(
        first,
        seeds,
        parallel,
        scenarios_dir,
        &report_dir.join("ledgers"),
        &progress,
    )
    .map_err(CliError::SweepSchedule)?;
    let cpu = summary.cpu_ms.map_or(String::new(), |cpu| {
        format!(
            ", {:.1}s CPU ({:.2}s per seed)",
            cpu as f64 / 1000.0,
            cpu as f64 / 1000.0 / summary.seeds.max(1) as f64
        )
    });
    outln!(
        "sweep: {} seed(s) in {:.1}s wall{cpu} ({:.0}s simulated), {} failed",
        summary.seeds,
        summary.wall_ms as f64 / 1000.0,
        summary.simulated_ms as f64 / 1000.0,
        summary.failed.len()
    );
    for r in &summary.failed {
        let file = write_failing_seed(r.seed, scenarios_dir, &report_dir.join("sweep-failures"))?;
        outln!(
            "  seed {}: {}\n    {}\n    {}\n    replay: {}\n    or: bloodraven-chaos run {}",
            r.seed,
            r.failure.as_deref().unwrap_or("?"),
            bloodraven_sim::rng::seed_line(r.seed),
            r.seam_faults,
            r.replay,
            file.display()
        );
    }
    let json = serde_json::to_string_pretty(&summary)?;
    report::write_text(&report_dir.join("sweep.json"), &json)?;
    Ok(summary)
}

/// Writes `seed`'s schedule, seed and seam-fault rates as a scenario file in `dir`, with
/// the playground fixture it names beside it (`dir/fixtures/`), so that
/// `bloodraven-chaos run FILE` replays the seed without the sweep.
fn write_failing_seed(seed: u64, scenarios_dir: &Path, dir: &Path) -> Result<PathBuf, CliError> {
    let file = dir.join(format!("sweep-{seed}.yaml"));
    report::write_text(&file, &sweep::schedule(seed))?;
    let fixture = scenarios_dir.join("fixtures").join("playground.yaml");
    let text = std::fs::read_to_string(&fixture).map_err(|source| report::ReportError::Read {
        path: fixture.clone(),
        source,
    })?;
    report::write_text(&dir.join("fixtures").join("playground.yaml"), &text)?;
    Ok(file)
}

async fn run_many(
    scenarios: Vec<Scenario>,
    options: &RunOptions,
    report_dir: &Path,
) -> Result<ExitCode, CliError> {
    run_many_outcomes(scenarios, options, report_dir)
        .await
        .map(|(code, _)| code)
}

async fn run_many_outcomes(
    scenarios: Vec<Scenario>,
    options: &RunOptions,
    report_dir: &Path,
) -> Result<(ExitCode, Vec<ScenarioOutcome>), CliError> {
    for s in &scenarios {
        if !s.supports(options.backend) {
            return Err(CliError::Unsupported {
                id: s.id.clone(),
                backend: options.backend,
                backends: s.backends.clone(),
            });
        }
    }
    // Fail before running anything when the backend cannot be built (k3d); a sim run
    // builds its own World per scenario.
    let mut first = match options.backend {
        BackendKind::K3d => Some(connect(options.backend, &options.k3d_context).await?),
        BackendKind::Sim => None,
    };
    let seed = match options.backend {
        BackendKind::Sim => {
            let seed = options.seed.unwrap_or(sim::DEFAULT_SEED);
            errln!(
                "sim: {}{}",
                bloodraven_sim::rng::seed_line(seed),
                if options.seed.is_none() {
                    " (the default unless a scenario sets simulation.seed; --seed N to change)"
                } else {
                    ""
                }
            );
            Some(seed)
        }
        BackendKind::K3d => options.seed,
    };
    let parallel = match options.backend {
        BackendKind::K3d if options.parallel > 1 => {
            errln!(
                "note: --parallel {} ignored: the k3d backend has one cluster",
                options.parallel
            );
            1
        }
        _ => options.parallel.max(1),
    };
    let total = scenarios.len();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut jobs = Vec::new();
    for (i, s) in scenarios.into_iter().enumerate() {
        let backend = match (options.backend, first.take()) {
            (BackendKind::Sim, _) => None,
            (_, Some(b)) => Some(b),
            (kind, None) => Some(connect(kind, &options.k3d_context).await?),
        };
        let mut config =
            RunConfig::new(report_dir.join("ledgers").join(format!("{}.ledger", s.id)));
        // A scenario's own `simulation.seed` (a sweep seed's file) unless --seed is given.
        config.seed = match options.backend {
            BackendKind::Sim => options.seed.or(s.simulation.seed).or(seed),
            BackendKind::K3d => seed,
        };
        let prefix = format!("[{}/{total}]", i + 1);
        config.progress = Some(Arc::new(move |line: &str| errln!("{prefix} {line}")));
        let stop = stop.clone();
        let fail_fast = options.fail_fast;
        jobs.push(async move {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            let outcome = run_one(s.clone(), backend, config.clone()).await;
            let verdict = if outcome.passed() { "PASS" } else { "FAIL" };
            errln!(
                "{} {} {verdict} in {:.1}s",
                config_prefix(&config),
                s.id,
                outcome.wall_ms as f64 / 1000.0
            );
            if !outcome.passed() {
                errln!("{}", report::failure_text(&outcome));
                if fail_fast {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Some(outcome)
        });
    }
    let outcomes: Vec<ScenarioOutcome> = futures::stream::iter(jobs)
        .buffered(parallel)
        .filter_map(|o| async move { o })
        .collect()
        .await;
    out!("\n{}", report::summary_table(&outcomes));
    let json = report::write_json(report_dir, options.backend, seed, &outcomes)?;
    outln!("JSON report: {}", json.display());
    if let Some(path) = &options.junit {
        let junit = report::junit("bloodraven-chaos", options.backend, seed, &outcomes);
        report::write_junit(path, &junit)?;
        outln!("JUnit report: {}", path.display());
    }
    let failed: Vec<&ScenarioOutcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    for o in &failed {
        outln!("replay {}: {}", o.id, report::replay_command(o));
    }
    let code = if failed.is_empty() && outcomes.len() == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    Ok((code, outcomes))
}

/// Runs one scenario: for sim on its own plain thread with a fresh World (as the sweep
/// does; not `spawn_blocking`, whose thread belongs to this runtime and would let
/// turmoil spawn onto it), on the given backend otherwise.
async fn run_one(
    scenario: Scenario,
    backend: Option<SharedBackend>,
    config: RunConfig,
) -> ScenarioOutcome {
    match backend {
        Some(backend) => runner::run_scenario(&scenario, backend, &config).await,
        None => {
            let not_run = ScenarioOutcome::not_run(
                scenario.id.clone(),
                BackendKind::Sim,
                "simulated playground".into(),
                config.seed,
                config.ledger_path.clone(),
            );
            let (done, outcome) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("sim-{}", scenario.id))
                .spawn(move || {
                    // The receiver only goes away if the CLI is already exiting.
                    let _ = done.send(sim::run_scenario(&scenario, &config));
                });
            if let Err(e) = spawned {
                return not_run.setup_failed(format!("cannot start the simulation thread: {e}"));
            }
            match outcome.await {
                Ok(outcome) => outcome,
                Err(_) => not_run.setup_failed("the simulation thread ended without an outcome"),
            }
        }
    }
}

fn config_prefix(config: &RunConfig) -> String {
    config
        .ledger_path
        .file_stem()
        .map(|s| format!("[{}]", s.to_string_lossy()))
        .unwrap_or_default()
}

async fn recover(
    ledger_path: Option<PathBuf>,
    report_dir: &Path,
    k3d_context: &str,
) -> Result<ExitCode, CliError> {
    let paths = match ledger_path {
        Some(p) => vec![p],
        None => {
            let dir = report_dir.join("ledgers");
            let mut found: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "ledger"))
                    .collect(),
                Err(_) => Vec::new(),
            };
            found.sort();
            found
        }
    };
    let mut failed = false;
    let mut undone = 0;
    for path in &paths {
        let recovery = ledger::read_for_recovery(path)?;
        if recovery.pending.is_empty() {
            continue;
        }
        if recovery.backend == BackendKind::Sim {
            outln!(
                "{}: sim run; the simulated cluster ended with the runner, nothing to undo",
                path.display()
            );
            continue;
        }
        let backend = connect(recovery.backend, k3d_context).await?;
        let result = recover_ledger(path, &backend).await?;
        for line in &result.undone {
            outln!("{}: undid {line}", recovery.scenario);
        }
        for line in &result.errors {
            errln!("{}: could not undo {line}", recovery.scenario);
        }
        undone += result.undone.len();
        failed |= !result.errors.is_empty();
    }
    outln!(
        "recover: {undone} fault(s) undone from {} ledger(s)",
        paths.len()
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The ledger of faults injected one at a time (`fault`), beside the runs' ledgers so
/// that `recover` finds it.
pub fn playground_ledger(report_dir: &Path) -> PathBuf {
    report_dir.join("ledgers").join("playground.ledger")
}

/// A fault as a scenario step writes it (`kill-site: iad`); `recover` is a verb of its own.
pub fn parse_fault(text: &str) -> Result<scenario::Fault, CliError> {
    let bad = |reason: String| CliError::BadOption {
        option: format!("FAULT {text:?}"),
        reason,
    };
    let fault: scenario::Fault = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
    if let scenario::Fault::Recover(_) = fault {
        return Err(bad("use `bloodraven-chaos recover` to undo faults".into()));
    }
    Ok(fault)
}

/// Plans `fault`, writes it and its undo to `ledger_path` (kept faults stay listed),
/// then applies it and leaves it in effect.
pub async fn inject_and_keep(
    fault: &scenario::Fault,
    namespace: &str,
    ledger_path: &Path,
    backend: &SharedBackend,
) -> Result<ExitCode, CliError> {
    let plan = backend.plan_fault(fault, namespace).await?;
    let now = backend.clock().now().to_string();
    let mut ledger =
        ledger::Ledger::open_append(ledger_path, backend.kind(), "playground", now.clone())?;
    let seq = ledger.record_fault("chaos.sh", fault, plan.undo.clone(), now)?;
    backend.execute(&plan.apply).await?;
    outln!(
        "#{seq} {fault}: in effect; `bloodraven-chaos recover` undoes it ({})",
        ledger_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What `recover_ledger` did: one line per fault undone, one per fault it could not undo.
#[derive(Debug, Default)]
pub struct RecoveryResult {
    pub undone: Vec<String>,
    pub errors: Vec<String>,
}

/// Undoes the faults a ledger still lists, newest first, with an already-built backend,
/// marking each undone in the ledger as it goes (so a second recover does nothing).
pub async fn recover_ledger(
    path: &Path,
    backend: &SharedBackend,
) -> Result<RecoveryResult, LedgerError> {
    let recovery = ledger::read_for_recovery(path)?;
    let clock = backend.clock();
    let mut result = RecoveryResult::default();
    for entry in &recovery.pending {
        let what = format!("#{} {} ({})", entry.seq, entry.fault, entry.step);
        match backend.execute(&entry.undo).await {
            Ok(()) => {
                ledger::append_undone(path, entry.seq, clock.now().to_string())?;
                result.undone.push(what);
            }
            Err(e) => result.errors.push(format!("{what}: {e}")),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn faults_parse_as_scenario_steps_write_them() {
        assert_eq!(
            parse_fault("kill-site: iad").unwrap(),
            scenario::Fault::KillSite("iad".into())
        );
        assert_eq!(
            parse_fault("{cordon: pdx}").unwrap(),
            scenario::Fault::Cordon("pdx".into())
        );
        for bad in ["recover: all", "explode: iad", ""] {
            let err = parse_fault(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn the_playground_ledger_is_where_recover_looks() {
        let path = playground_ledger(Path::new("reports"));
        assert_eq!(path, Path::new("reports/ledgers/playground.ledger"));
        assert_eq!(path.extension().unwrap(), "ledger");
    }
}
