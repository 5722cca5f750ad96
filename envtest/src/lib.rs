//! envtest: the operator's controllers against an API server over HTTP. The tests live
//! in `tests/`: by default they start the simulated API server (bloodraven-sim) on a
//! loopback port; with `BLOODRAVEN_ENVTEST_KUBECONFIG=<path>` they run against the
//! real kube-apiserver that kubeconfig points at. Each test prints which one it used.
