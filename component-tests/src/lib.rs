//! Component tests live in `tests/`; this library holds what they share: a small Helm
//! template renderer for the chart tests (`helm`).

pub mod helm;
