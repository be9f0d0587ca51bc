//! Speed benchmarks for the workspace.
//!
//! The `bench` binary has one subcommand per suite: `bench devcluster` measures the in-memory
//! API server (write throughput and latency, watch fan-out, large lists), both as a separate
//! process and in-process. The building blocks here — spawning a server process and waiting
//! for its ready line, sampling a process's CPU and memory from `/proc`, reading the dev
//! cluster's request accounting, a keep-alive HTTP/1.1 client, percentiles and the result
//! JSON — are shared so that further suites (the operator's scale benchmark) reuse them.
//!
//! See `docs/benchmarks.md` for how to run it and what each number means.

pub mod accounting;
pub mod error;
pub mod http;
pub mod machine;
pub mod process;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod stats;
pub mod suites;

pub use error::BenchError;
