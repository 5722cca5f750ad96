//! envtest tests live in `tests/`.
