//! What every controller family shares: configuration, the manager, backoff, metrics, probes,
//! leader election, Events, shared watches and shutdown.
//!
//! Start with [`manager`] (the [`manager::Family`] trait and [`manager::RuntimeContext`]) and
//! [`controller::controller_task`]; docs/operations.md describes the operator's behaviour.

pub mod ack;
pub mod backoff;
pub mod compact;
pub mod config;
pub mod controller;
pub mod events;
pub mod leader;
pub mod lenient;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod names;
pub mod packed;
pub mod probes;
pub mod relist;
pub mod secrets;
pub mod shutdown;
pub mod slim;
pub mod startup;
pub mod watches;

pub use controller::{
    ControllerError, ControllerOptions, ControllerTask, Guarded, ReconcileError, controller_task,
    controller_task_with,
};
pub use manager::{CrdRef, Family, FamilyError, Manager, RuntimeContext};
pub use watches::{SharedWatch, SharedWatches};
