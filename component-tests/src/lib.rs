//! Component tests live in `tests/`.
