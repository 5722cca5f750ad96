//! Benchmark: wall time to simulate 10 minutes of the idle playground topology (API
//! server host, control-plane node, one node per site, controllers; no operator, no
//! pods). Run: `cargo run -p bloodraven-sim --example idle_world_bench` (dev profile)
//! or add `--release`. Optional argument: tick in milliseconds (default: the world's, 2).
//!
//! Wall time is read here, and only here, because measuring it is the point.

use std::time::{Duration, Instant};

use bloodraven_sim::WorldBuilder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tick_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let simulated = Duration::from_secs(600);
    let mut world = WorldBuilder::new(1)
        .tick(Duration::from_millis(tick_ms))
        .build()?;
    let started = Instant::now();
    world.run_for(simulated)?;
    let wall = started.elapsed();
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!(
        "idle playground: {:?} simulated in {:.3} s wall ({profile} profile, tick {tick_ms} ms, {} steps, {:.0}x real time)",
        simulated,
        wall.as_secs_f64(),
        simulated.as_millis() / u128::from(tick_ms),
        simulated.as_secs_f64() / wall.as_secs_f64(),
    );
    Ok(())
}
