//! A Kubernetes-compatible API server that runs in-process, for tests, benchmarks and
//! no-setup local runs.
