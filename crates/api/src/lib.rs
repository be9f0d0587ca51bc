//! CRD types for the three API groups agentic-operator serves, plus CRD generation.
//!
//! No I/O lives here: only types, schemas and pure helpers that the operator, the
//! webhook, the dev cluster and the tests share.

pub mod crds;
