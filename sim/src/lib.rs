//! Simulated cluster.
