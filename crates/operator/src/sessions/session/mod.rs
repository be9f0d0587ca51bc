//! The `AgenticSession` controller: runs each session as a runner Job, tracks its phase from
//! the Job and its pod, enforces timeouts, stops and resumes on request, and provisions
//! per-session credentials.
//!
//! Stages: [`controller`] observes the caches and applies; [`state`] decides (pure);
//! [`build`] makes the desired objects (pure); [`status`] computes the status and the patch
//! (pure). [`cached`] holds the slim cached views of Jobs and pods; [`recent`] remembers
//! the controller's own writes until the caches show them. [`extras`] adds what a
//! run needs besides its Job ([`network`], [`copied`] Secrets, [`trusted_ca`]); [`project`] is what a session reads of its
//! `ProjectSettings`; [`live`] pushes spec
//! changes to a running runner; [`trigger`] is the `session-trigger` command of scheduled
//! sessions.

pub mod build;
pub mod cached;
pub mod config;
pub mod controller;
pub mod copied;
pub mod error;
pub mod extras;
pub mod live;
pub mod metrics;
pub mod models;
pub mod mounted;
pub mod names;
pub mod network;
pub mod project;
pub mod recent;
pub mod rechecks;
pub mod registry;
pub mod state;
pub mod status;
pub mod trigger;
pub mod trusted_ca;

pub use controller::{controllers, controllers_with};
pub use error::SessionError;
