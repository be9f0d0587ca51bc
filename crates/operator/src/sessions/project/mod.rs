//! The `ProjectSettings` and namespace controller of the sessions family.

use crate::runtime::{ControllerTask, FamilyError, RuntimeContext, SharedWatches};

/// Builds this module's controllers on the shared runtime.
pub fn controllers(
    _rt: &RuntimeContext,
    _watches: &mut SharedWatches,
) -> Result<Vec<ControllerTask>, FamilyError> {
    Ok(Vec::new())
}
