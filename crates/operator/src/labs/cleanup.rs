//! Cleanup ordering: a pure plan (what to delete next and what to wait for) and the pass that
//! carries it out over a [`Source`] of children.
//!
//! Children are removed stage by stage: the Workflow, the Grafana datasource and the tutorial
//! kubeconfig Secrets, then the
//! Applications (Argo CD removes the deployed resources while the cluster is still registered),
//! then the cluster Secrets, then the claims (the clusters themselves) and the hub namespace
//! `<experiment>` when this Experiment created it (deleted together, so a namespace slow to
//! terminate never holds back the deletion of a cluster). A stage starts only
//! when the previous one is gone; `NotFound` counts as gone.
//!
//! A pass reads the children from the watch caches, so it may see a child that is already gone
//! (deleting it again finds `NotFound`) or miss one the cache has not seen yet. The second case
//! must never release the finalizer: before a pass reports that nothing is left, it lists every
//! cache-backed kind from the API server once ([`Source::confirm`]) and goes on with what
//! that finds.

use std::{future::Future, time::Duration};

use kube::discovery::ApiResource;

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
    /// The hub namespace `<experiment>` this Experiment created for its hub targets.
    HubNamespace,
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
            Self::HubNamespace => "Namespace",
            Self::Claim => "claim",
        }
    }

    /// Cleanup stage: children of a lower stage go first.
    const fn stage(self) -> u8 {
        match self {
            Self::Workflow | Self::Datasource | Self::KubeconfigSecret => 0,
            Self::Application => 1,
            Self::ClusterSecret => 2,
            Self::Claim | Self::HubNamespace => 3,
        }
    }
}

/// A child that still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its kind.
    pub kind: ChildKind,
    /// Namespace (empty for a cluster-scoped child).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// How long ago its deletion started, if it has.
    pub deleting_for: Option<Duration>,
    /// Its API resource (needed to delete it; claims come in several kinds).
    pub resource: Option<ApiResource>,
}

impl Child {
    /// `Kind namespace/name`, or `Kind name` when cluster-scoped.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind.label(), self.name)
        } else {
            format!("{} {}/{}", self.kind.label(), self.namespace, self.name)
        }
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

/// Plans the next step from the children that still exist. A child whose deletion has
/// lasted `stuck_after` or longer no longer holds back the later stages (it is still waited
/// for and reported): an Application that Argo CD cannot finish deleting must not keep the
/// clusters, which cost money, running.
pub fn plan(children: &[Child], stuck_after: Duration) -> Step {
    let is_stuck = |c: &Child| c.deleting_for.is_some_and(|d| d >= stuck_after);
    let Some(stage) = children
        .iter()
        .filter(|c| !is_stuck(c))
        .map(|c| c.kind.stage())
        .min()
    else {
        return if children.is_empty() {
            Step::Done
        } else {
            Step::Work {
                delete: Vec::new(),
                waiting: children.to_vec(),
            }
        };
    };
    let (waiting, delete): (Vec<Child>, Vec<Child>) = children
        .iter()
        .filter(|c| c.kind.stage() == stage || (c.kind.stage() < stage && is_stuck(c)))
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

/// Where a cleanup pass finds children and how it deletes them.
pub trait Source {
    /// Why a read or a delete failed.
    type Error;
    /// The children as the watch caches show them; kinds without a usable cache are listed
    /// from the API server.
    fn observe(&self) -> impl Future<Output = Result<Vec<Child>, Self::Error>> + Send;
    /// The children of the kinds [`Self::observe`] read from caches, as the API server holds
    /// them now (one list per kind); the kinds it listed live are current already.
    fn confirm(&self) -> impl Future<Output = Result<Vec<Child>, Self::Error>> + Send;
    /// Deletes one child: `true` when it is gone at once, `false` when its deletion waits for
    /// finalizers.
    fn delete(&self, child: &Child) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// Result of one cleanup pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is left, confirmed against the API server.
    Done,
    /// These children of the current stage are being deleted; a later pass goes on.
    Waiting(Vec<Child>),
}

/// Upper bound of plan steps in one pass (each step deletes at least one child).
const MAX_STEPS: usize = 256;

/// One cleanup pass: deletes stage after stage for as long as each stage is gone at once
/// (children stuck for `stuck_after` do not hold back later stages, see [`plan`]), and
/// reports [`Outcome::Done`] only after [`Source::confirm`] found nothing left.
pub async fn run<S: Source + Sync>(source: &S, stuck_after: Duration) -> Result<Outcome, S::Error> {
    let mut children = source.observe().await?;
    let mut confirmed = false;
    for _ in 0..MAX_STEPS {
        match plan(&children, stuck_after) {
            Step::Done if confirmed => return Ok(Outcome::Done),
            Step::Done => {
                children = source.confirm().await?;
                confirmed = true;
            }
            Step::Work { delete, waiting } if delete.is_empty() => {
                return Ok(Outcome::Waiting(waiting));
            }
            Step::Work { delete, .. } => {
                for child in delete {
                    let gone = source.delete(&child).await?;
                    let position = children.iter().position(|c| *c == child);
                    match (gone, position) {
                        (true, Some(i)) => {
                            children.remove(i);
                        }
                        (false, Some(i)) => children[i].deleting_for = Some(Duration::ZERO),
                        (_, None) => {}
                    }
                }
            }
        }
    }
    let waiting = match plan(&children, stuck_after) {
        Step::Work { delete, waiting } => waiting.into_iter().chain(delete).collect(),
        Step::Done => Vec::new(),
    };
    Ok(Outcome::Waiting(waiting))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A stuck threshold no test child reaches.
    const HOUR: Duration = Duration::from_hours(1);

    fn child(kind: ChildKind, name: &str, deleting: Option<u64>) -> Child {
        Child {
            kind,
            namespace: "ns".into(),
            name: name.into(),
            deleting_for: deleting.map(Duration::from_secs),
            resource: None,
        }
    }

    /// A source whose cache may lag behind the API server.
    struct Fake {
        cached: Vec<Child>,
        live: Mutex<Vec<Child>>,
        /// Names whose deletion waits for a finalizer.
        finalized: Vec<&'static str>,
        confirms: Mutex<usize>,
        deleted: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(cached: Vec<Child>, live: Vec<Child>, finalized: Vec<&'static str>) -> Self {
            Self {
                cached,
                live: Mutex::new(live),
                finalized,
                confirms: Mutex::new(0),
                deleted: Mutex::new(Vec::new()),
            }
        }
    }

    impl Source for Fake {
        type Error = String;
        async fn observe(&self) -> Result<Vec<Child>, String> {
            Ok(self.cached.clone())
        }
        async fn confirm(&self) -> Result<Vec<Child>, String> {
            *self.confirms.lock().unwrap() += 1;
            Ok(self.live.lock().unwrap().clone())
        }
        async fn delete(&self, child: &Child) -> Result<bool, String> {
            self.deleted.lock().unwrap().push(child.name.clone());
            let mut live = self.live.lock().unwrap();
            if self.finalized.contains(&child.name.as_str()) {
                for c in live.iter_mut().filter(|c| c.name == child.name) {
                    c.deleting_for.get_or_insert(Duration::ZERO);
                }
                return Ok(false);
            }
            live.retain(|c| c.name != child.name);
            Ok(true)
        }
    }

    #[tokio::test]
    async fn a_cache_that_is_behind_does_not_end_cleanup_early() {
        // The claim's cache has not seen the claim yet; the API server has it.
        let claim = child(ChildKind::Claim, "c", None);
        let fake = Fake::new(vec![], vec![claim.clone()], vec!["c"]);
        let outcome = run(&fake, HOUR).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Waiting(vec![child(ChildKind::Claim, "c", Some(0))])
        );
        assert_eq!(*fake.deleted.lock().unwrap(), ["c"]);
        assert_eq!(*fake.confirms.lock().unwrap(), 1);
        // The same with a cache error the other way: it still shows a child that is gone.
        let gone = Fake::new(vec![child(ChildKind::Workflow, "w", None)], vec![], vec![]);
        assert_eq!(run(&gone, HOUR).await.unwrap(), Outcome::Done);
        assert_eq!(*gone.confirms.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn stages_without_finalizers_go_in_one_pass() {
        let all = vec![
            child(ChildKind::Claim, "c", None),
            child(ChildKind::ClusterSecret, "s", None),
            child(ChildKind::Application, "a", None),
            child(ChildKind::Workflow, "w", None),
        ];
        let fake = Fake::new(all.clone(), all.clone(), vec![]);
        assert_eq!(run(&fake, HOUR).await.unwrap(), Outcome::Done);
        assert_eq!(*fake.deleted.lock().unwrap(), ["w", "a", "s", "c"]);
        // An Application with a finalizer holds back the rest, and is deleted once.
        let fake = Fake::new(all.clone(), all, vec!["a"]);
        assert_eq!(
            run(&fake, HOUR).await.unwrap(),
            Outcome::Waiting(vec![child(ChildKind::Application, "a", Some(0))])
        );
        assert_eq!(*fake.deleted.lock().unwrap(), ["w", "a"]);
        assert_eq!(*fake.confirms.lock().unwrap(), 0);
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
        let Step::Work { delete, waiting } = plan(&all, HOUR) else {
            panic!("work expected")
        };
        assert_eq!(
            delete.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["d", "w"]
        );
        assert!(waiting.is_empty());

        // Applications only once the workflow and datasource are gone.
        let Step::Work { delete, .. } = plan(&all[..3], HOUR) else {
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
            plan(&mid, HOUR),
            Step::Work {
                delete: vec![],
                waiting: vec![child(ChildKind::Application, "a", Some(3))]
            }
        );
        let Step::Work { delete, .. } = plan(&all[..2], HOUR) else {
            panic!()
        };
        assert_eq!(delete[0].kind, ChildKind::ClusterSecret);
        let Step::Work { delete, .. } = plan(&all[..1], HOUR) else {
            panic!()
        };
        assert_eq!(delete[0].kind, ChildKind::Claim);
        assert_eq!(plan(&[], HOUR), Step::Done);
        // Tutorial kubeconfig Secrets go in the first stage, before the Applications.
        let tutorial = vec![
            child(ChildKind::Application, "a", None),
            child(ChildKind::KubeconfigSecret, "k", None),
        ];
        let Step::Work { delete, .. } = plan(&tutorial, HOUR) else {
            panic!()
        };
        assert_eq!(delete, vec![child(ChildKind::KubeconfigSecret, "k", None)]);
        // The hub namespace goes only after the Applications that deploy into it (Argo CD
        // removes their resources first), together with the claims.
        let hub = vec![
            child(ChildKind::Claim, "c", None),
            child(ChildKind::HubNamespace, "gw", None),
            child(ChildKind::ClusterSecret, "s", None),
            child(ChildKind::Application, "a", Some(1)),
        ];
        let Step::Work { delete, waiting } = plan(&hub, HOUR) else {
            panic!()
        };
        assert!(delete.is_empty());
        assert_eq!(waiting[0].kind, ChildKind::Application);
        let Step::Work { delete, .. } = plan(&hub[..3], HOUR) else {
            panic!()
        };
        assert_eq!(delete, vec![child(ChildKind::ClusterSecret, "s", None)]);
        let Step::Work { delete, .. } = plan(&hub[..2], HOUR) else {
            panic!()
        };
        assert_eq!(
            delete,
            vec![
                child(ChildKind::Claim, "c", None),
                child(ChildKind::HubNamespace, "gw", None)
            ]
        );
        // A namespace still terminating does not hold back a claim.
        let terminating = vec![
            child(ChildKind::HubNamespace, "gw", Some(30)),
            child(ChildKind::Claim, "c", None),
        ];
        let Step::Work { delete, waiting } = plan(&terminating, HOUR) else {
            panic!()
        };
        assert_eq!(delete, vec![child(ChildKind::Claim, "c", None)]);
        assert_eq!(
            waiting,
            vec![child(ChildKind::HubNamespace, "gw", Some(30))]
        );
    }

    #[test]
    fn a_cluster_scoped_child_is_shown_without_a_namespace() {
        let mut ns = child(ChildKind::HubNamespace, "gw", None);
        ns.namespace = String::new();
        assert_eq!(ns.display(), "Namespace gw");
        assert_eq!(
            child(ChildKind::Application, "a", None).display(),
            "Application ns/a"
        );
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

    #[test]
    fn a_stuck_application_does_not_keep_the_clusters() {
        let children = vec![
            child(ChildKind::Application, "app", Some(600)),
            child(ChildKind::ClusterSecret, "cluster-secret", None),
            child(ChildKind::Claim, "claim", None),
        ];
        // Deleting for 600 s: under a threshold of an hour the Application still holds the
        // rest back; at ten minutes it is stuck, and the cluster Secret goes next.
        assert_eq!(
            plan(&children, HOUR),
            Step::Work {
                delete: vec![],
                waiting: vec![children[0].clone()]
            }
        );
        let ten_minutes = Duration::from_mins(10);
        let Step::Work { delete, waiting } = plan(&children, ten_minutes) else {
            panic!("work expected");
        };
        assert_eq!(delete, vec![children[1].clone()]);
        assert_eq!(
            waiting,
            vec![children[0].clone()],
            "the stuck one is still reported"
        );
        // With the Secret gone, the claim (the cluster) is deleted.
        let Step::Work { delete, .. } =
            plan(&[children[0].clone(), children[2].clone()], ten_minutes)
        else {
            panic!("work expected");
        };
        assert_eq!(delete, vec![children[2].clone()]);
        // Only stuck children left: nothing to delete, they are waited for, never Done.
        assert_eq!(
            plan(&children[..1], ten_minutes),
            Step::Work {
                delete: vec![],
                waiting: vec![children[0].clone()]
            }
        );
    }
}
