//! The decision engine: the pure heart of the operator. An observed snapshot and the
//! time go in; actions, a status and Event intents come out. No I/O and no clock reads
//! happen here, so every decision is a table test.

pub mod lease;
pub mod time;
