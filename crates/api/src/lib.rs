//! CRD types for the three API groups agentic-operator serves, plus CRD generation.
//!
//! No I/O lives here: only types, schemas and pure helpers that the operator, the
//! webhook, the dev cluster and the tests share.
//!
//! - [`sessions`]: `vteam.ambient-code/v1alpha1` `AgenticSession` and `ProjectSettings`.
//! - [`evaluations`]: `testbench.agentic-layer.ai/v1alpha1` `Experiment`.
//! - [`labs`]: `experiments.illm.io/v1alpha1` `Experiment` and `Component`.
//! - [`crds`]: the `CustomResourceDefinition` manifests of all of them.

// Doc comments on spec and status fields become the CRD descriptions `kubectl explain`
// shows, where Kubernetes kind names (ConfigMap, ServiceAccount, ...) read as plain words.
#![allow(clippy::doc_markdown)]
// `#[kube(printcolumn(...))]` repeats `type_ = ...` once per column by design.
#![allow(clippy::duplicated_attributes)]

pub mod crds;
pub mod enums;
pub mod evaluations;
pub mod labs;
mod schema;
pub mod sessions;

pub use enums::UnknownValue;
