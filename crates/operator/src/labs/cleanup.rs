//! Cleanup ordering, as a pure plan: what to delete next and what to wait for.
//!
//! Children are removed stage by stage: the Workflow, the Grafana datasource and the tutorial
//! kubeconfig Secrets, then the
//! Applications (Argo CD removes the deployed resources while the cluster is still registered),
//! then the cluster Secrets, then the claims (the clusters themselves). A stage starts only
//! when the previous one is gone; `NotFound` counts as gone.

use std::time::Duration;

/// Kind of a child, in cleanup order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    /// Argo Workflow.
    Workflow,
    /// Grafana datasource `ConfigMap`.
    Datasource,
    /// Tutorial kubeconfig Secret in the Experiment's namespace.
    KubeconfigSecret,
    /// Argo CD Application.
    Application,
    /// Argo CD cluster Secret.
    ClusterSecret,
    /// Crossplane claim.
    Claim,
}

impl ChildKind {
    /// Display name used in conditions.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Workflow => "Workflow",
            Self::Datasource => "ConfigMap",
            Self::KubeconfigSecret => "kubeconfig Secret",
            Self::Application => "Application",
            Self::ClusterSecret => "Secret",
            Self::Claim => "claim",
        }
    }

    /// Cleanup stage: children of a lower stage go first.
    const fn stage(self) -> u8 {
        match self {
            Self::Workflow | Self::Datasource | Self::KubeconfigSecret => 0,
            Self::Application => 1,
            Self::ClusterSecret => 2,
            Self::Claim => 3,
        }
    }
}

/// A child that still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its kind.
    pub kind: ChildKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// How long ago its deletion started, if it has.
    pub deleting_for: Option<Duration>,
}

impl Child {
    /// `Kind namespace/name`.
    pub fn display(&self) -> String {
        format!("{} {}/{}", self.kind.label(), self.namespace, self.name)
    }
}

/// The next cleanup step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing is left.
    Done,
    /// Delete `delete` and wait for everything in the current stage (`waiting`) to go.
    Work {
        /// Children of the current stage not yet being deleted.
        delete: Vec<Child>,
        /// Children of the current stage already being deleted.
        waiting: Vec<Child>,
    },
}

/// Plans the next step from the children that still exist.
pub fn plan(children: &[Child]) -> Step {
    let Some(stage) = children.iter().map(|c| c.kind.stage()).min() else {
        return Step::Done;
    };
    let (waiting, delete): (Vec<Child>, Vec<Child>) = children
        .iter()
        .filter(|c| c.kind.stage() == stage)
        .cloned()
        .partition(|c| c.deleting_for.is_some());
    Step::Work { delete, waiting }
}

/// Children whose deletion has taken longer than `after`.
pub fn stuck(children: &[Child], after: Duration) -> Vec<&Child> {
    children
        .iter()
        .filter(|c| c.deleting_for.is_some_and(|d| d >= after))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(kind: ChildKind, name: &str, deleting: Option<u64>) -> Child {
        Child {
            kind,
            namespace: "ns".into(),
            name: name.into(),
            deleting_for: deleting.map(Duration::from_secs),
        }
    }

    #[test]
    fn stages_run_in_dependency_order() {
        let all = vec![
            child(ChildKind::Claim, "c", None),
            child(ChildKind::ClusterSecret, "s", None),
            child(ChildKind::Application, "a", None),
            child(ChildKind::Datasource, "d", None),
            child(ChildKind::Workflow, "w", None),
        ];
        let Step::Work { delete, waiting } = plan(&all) else {
            panic!("work expected")
        };
        assert_eq!(
            delete.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["d", "w"]
        );
        assert!(waiting.is_empty());

        // Applications only once the workflow and datasource are gone.
        let Step::Work { delete, .. } = plan(&all[..3]) else {
            panic!()
        };
        assert_eq!(delete[0].kind, ChildKind::Application);
        // An Application being deleted holds back the cluster Secret.
        let mid = vec![
            child(ChildKind::Claim, "c", None),
            child(ChildKind::ClusterSecret, "s", None),
            child(ChildKind::Application, "a", Some(3)),
        ];
        assert_eq!(
            plan(&mid),
            Step::Work {
                delete: vec![],
                waiting: vec![child(ChildKind::Application, "a", Some(3))]
            }
        );
        let Step::Work { delete, .. } = plan(&all[..2]) else {
            panic!()
        };
        assert_eq!(delete[0].kind, ChildKind::ClusterSecret);
        let Step::Work { delete, .. } = plan(&all[..1]) else {
            panic!()
        };
        assert_eq!(delete[0].kind, ChildKind::Claim);
        assert_eq!(plan(&[]), Step::Done);
        // Tutorial kubeconfig Secrets go in the first stage, before the Applications.
        let tutorial = vec![
            child(ChildKind::Application, "a", None),
            child(ChildKind::KubeconfigSecret, "k", None),
        ];
        let Step::Work { delete, .. } = plan(&tutorial) else {
            panic!()
        };
        assert_eq!(delete, vec![child(ChildKind::KubeconfigSecret, "k", None)]);
    }

    #[test]
    fn stuck_deletions_are_reported() {
        let c = vec![
            child(ChildKind::Claim, "slow", Some(700)),
            child(ChildKind::Claim, "fresh", Some(5)),
            child(ChildKind::Claim, "new", None),
        ];
        let s = stuck(&c, Duration::from_mins(10));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].display(), "claim ns/slow");
    }
}
