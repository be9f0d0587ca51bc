//! The error type shared by every benchmark module.

use std::path::PathBuf;

/// Why a benchmark could not run or produced unusable results.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file under `/proc` could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("cannot parse {what}: {detail}")]
    ProcFormat {
        /// Which file or field.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A process could not be started or stopped.
    #[error("process {program}: {detail}")]
    Spawn {
        /// The program.
        program: String,
        /// What went wrong.
        detail: String,
    },
    /// A process did not print its ready line in time.
    #[error("process {program} printed no line starting with {prefix:?} within {seconds} s")]
    NotReady {
        /// The program.
        program: String,
        /// The expected line prefix.
        prefix: String,
        /// The timeout.
        seconds: u64,
    },
    /// An HTTP exchange failed at the transport level.
    #[error("HTTP {method} {path}: {detail}")]
    Http {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The server answered with an unexpected status.
    #[error("HTTP {method} {path}: status {status}, expected {expected}: {body}")]
    Status {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// Status received.
        status: u16,
        /// Status expected.
        expected: u16,
        /// Start of the response body.
        body: String,
    },
    /// A response body was not the JSON the benchmark expects.
    #[error("unexpected response to {what}: {detail}")]
    Decode {
        /// Which request.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The in-process dev cluster could not start.
    #[error("in-process dev cluster: {0}")]
    Start(#[from] devcluster::StartError),
    /// A result file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A benchmark parameter is out of range.
    #[error("{field}: {detail}")]
    Config {
        /// The parameter (command-line flag).
        field: String,
        /// What is allowed.
        detail: String,
    },
    /// A phase did not finish within its deadline.
    #[error("{phase} did not finish within {seconds} s: {detail}")]
    Timeout {
        /// The phase.
        phase: String,
        /// The deadline.
        seconds: u64,
        /// Progress when it was abandoned.
        detail: String,
    },
}
