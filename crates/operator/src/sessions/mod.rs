//! The sessions family (`vteam.ambient-code/v1alpha1`): the `AgenticSession` controller, which
//! runs each session as a runner Job, and the `ProjectSettings`/namespace controller, which keeps
//! each managed project namespace configured.

pub mod project;
pub mod session;

use crate::runtime::{ControllerTask, CrdRef, Family, FamilyError, RuntimeContext, SharedWatches};

/// The sessions family as the manager sees it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sessions;

impl Family for Sessions {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        vec![
            CrdRef::new(
                agentic_api::sessions::GROUP,
                agentic_api::sessions::VERSION,
                "agenticsessions",
            ),
            CrdRef::new(
                agentic_api::sessions::GROUP,
                agentic_api::sessions::VERSION,
                "projectsettings",
            ),
        ]
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        let mut tasks = project::controllers(rt, watches)?;
        tasks.extend(session::controllers(rt, watches)?);
        Ok(tasks)
    }
}
