//! Chaos runner.
