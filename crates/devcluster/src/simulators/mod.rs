//! Simulated cluster components (scheduler, kubelet, workload controllers) that run next to
//! the API server as [`crate::DevClusterBuilder::on_start`] tasks, talking to it through a
//! regular `kube::Client`. Each simulator lives in its own submodule.
