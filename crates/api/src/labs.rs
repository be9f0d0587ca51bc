//! API group `experiments.illm.io/v1alpha1`: `Experiment` (provision target clusters, deploy
//! components, run an Argo Workflow, collect and publish results) and the cluster-scoped
//! `Component` catalogue it deploys from.
//!
//! The schema follows the deployed upstream CRD YAML, including the fields that exist only
//! there (`series`, `ttlDays`, the `glossary` analyzer section, `minItems` on sections).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

/// The API group of this module's kinds.
pub const GROUP: &str = "experiments.illm.io";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of this module's kinds.
pub const API_VERSION: &str = "experiments.illm.io/v1alpha1";

/// Finalizer on every lab experiment; removed once its external resources are cleaned up.
pub const FINALIZER: &str = "experiments.illm.io/finalizer";
/// Experiment annotation carrying the human review decision (`approved` or `rejected`).
pub const ANNOTATION_REVIEW: &str = "experiments.illm.io/review";
/// Label on cluster claims naming the claim (`<experiment>-<target>`).
pub const LABEL_CLUSTER: &str = "experiments.illm.io/cluster";
/// The standard `app.kubernetes.io/managed-by` label key.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on objects created for experiments.
pub const MANAGED_BY: &str = "experiment-operator";
/// Condition type: the quality gate ran out of iterations.
pub const CONDITION_QUALITY_GATE: &str = "QualityGate";
/// Condition type: human review of the published results.
pub const CONDITION_REVIEW_GATE: &str = "ReviewGate";
/// Condition type: the AI analyzer Job finished.
pub const CONDITION_ANALYSIS_COMPLETE: &str = "AnalysisComplete";
/// `status.targets[].clusterName` of a target running on the hub cluster.
pub const HUB_CLUSTER_NAME: &str = "hub";
/// Default `spec.ttlDays`.
pub const DEFAULT_TTL_DAYS: i64 = 1;
/// Default `spec.qualityGate.maxIterations`.
pub const DEFAULT_MAX_ITERATIONS: i64 = 3;
/// Default `spec.qualityGate.minDataCoverage` (applied by the operator, not the schema).
pub const DEFAULT_MIN_DATA_COVERAGE: f64 = 0.5;
/// Default `spec.qualityGate.recollectDelaySeconds`.
pub const DEFAULT_RECOLLECT_DELAY_SECONDS: i64 = 120;

string_enum! {
    /// Lifecycle phase of a lab `Experiment` (`status.phase`).
    #[derive(Default)]
    pub enum ExperimentPhase as "status.phase" {
        /// Accepted; nothing created yet.
        #[default]
        Pending => "Pending",
        /// Target clusters are being provisioned and components deployed.
        Provisioning => "Provisioning",
        /// Every target is ready; the workflow is about to start.
        Ready => "Ready",
        /// The workflow is running.
        Running => "Running",
        /// The workflow finished and results were collected.
        Complete => "Complete",
        /// Something failed.
        Failed => "Failed",
    }
}

impl ExperimentPhase {
    /// `Complete` and `Failed`.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

string_enum! {
    /// Kind of cluster a target runs on.
    pub enum ClusterType as "spec.targets[].cluster.type" {
        /// A GKE cluster provisioned through a Crossplane `GKECluster` claim.
        Gke => "gke",
        /// A Talos cluster provisioned through a Crossplane claim (kind set by configuration).
        Talos => "talos",
        /// A virtual cluster provisioned through a Crossplane claim (kind set by configuration).
        Vcluster => "vcluster",
        /// The hub cluster the operator runs in.
        Hub => "hub",
    }
}

string_enum! {
    /// How telemetry leaves a target.
    pub enum Transport as "spec.targets[].observability.transport" {
        /// Direct connection.
        Direct => "direct",
        /// Through Tailscale.
        Tailscale => "tailscale",
    }
}

string_enum! {
    /// How an experiment decides that its run is over.
    pub enum CompletionMode as "spec.workflow.completion.mode" {
        /// When the Argo Workflow finishes.
        Workflow => "workflow",
        /// Only when a person ends it.
        Manual => "manual",
    }
}

string_enum! {
    /// Prometheus query kind.
    #[derive(Default)]
    pub enum QueryType as "spec.metrics[].type" {
        /// A single instant query.
        #[default]
        Instant => "instant",
        /// A range query over the run.
        Range => "range",
    }
}

string_enum! {
    /// Comparison of a success criterion.
    pub enum ComparisonOperator as "spec.hypothesis.successCriteria[].operator" {
        /// Less than.
        Lt => "lt",
        /// Less than or equal.
        Lte => "lte",
        /// Greater than.
        Gt => "gt",
        /// Greater than or equal.
        Gte => "gte",
    }
}

string_enum! {
    /// A section the AI analyzer writes.
    pub enum AnalyzerSection as "spec.analyzerConfig.sections[]" {
        /// Abstract.
        Abstract => "abstract",
        /// Per-target analysis.
        TargetAnalysis => "targetAnalysis",
        /// Performance analysis.
        PerformanceAnalysis => "performanceAnalysis",
        /// Metric insights.
        MetricInsights => "metricInsights",
        /// Cost analysis.
        FinopsAnalysis => "finopsAnalysis",
        /// Security analysis.
        SecopsAnalysis => "secopsAnalysis",
        /// Body text.
        Body => "body",
        /// Capabilities matrix.
        CapabilitiesMatrix => "capabilitiesMatrix",
        /// Feedback.
        Feedback => "feedback",
        /// Architecture diagram.
        ArchitectureDiagram => "architectureDiagram",
        /// Glossary.
        Glossary => "glossary",
    }
}

string_enum! {
    /// State of the AI analyzer Job.
    pub enum AnalysisPhase as "status.analysisPhase" {
        /// Not started yet.
        Pending => "Pending",
        /// Running.
        Running => "Running",
        /// Finished successfully.
        Succeeded => "Succeeded",
        /// Failed.
        Failed => "Failed",
        /// Not run.
        Skipped => "Skipped",
    }
}

string_enum! {
    /// State of the human review gate.
    pub enum ReviewPhase as "status.reviewPhase" {
        /// Waiting for a decision.
        Pending => "Pending",
        /// Approved (the PR is merged).
        Approved => "Approved",
        /// Rejected (the PR is closed).
        Rejected => "Rejected",
        /// No review needed.
        Skipped => "Skipped",
    }
}

string_enum! {
    /// State of the quality-gate loop.
    pub enum IterationPhase as "status.iterationStatus.phase" {
        /// Checking the collected data.
        Evaluating => "Evaluating",
        /// Collecting the metrics again.
        Recollecting => "Recollecting",
        /// Coverage is sufficient.
        Passed => "Passed",
        /// Out of iterations.
        Exhausted => "Exhausted",
    }
}

string_enum! {
    /// Value of the `experiments.illm.io/review` annotation.
    pub enum ReviewDecision as "experiments.illm.io/review" {
        /// Merge the results PR.
        Approved => "approved",
        /// Close the results PR.
        Rejected => "rejected",
    }
}

/// Desired state of a lab `Experiment`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "experiments.illm.io",
    version = "v1alpha1",
    kind = "Experiment",
    plural = "experiments",
    singular = "experiment",
    namespaced,
    status = "ExperimentStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "A lab experiment: target clusters, components deployed through ArgoCD, an Argo Workflow, collected metrics and published results.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Targets",
        type_ = "string",
        json_path = ".spec.targets[*].name"
    ),
    printcolumn(
        name = "Workflow",
        type_ = "string",
        json_path = ".status.workflowStatus.phase"
    ),
    printcolumn(name = "Published", type_ = "boolean", json_path = ".status.published"),
    printcolumn(
        name = "Cleaned",
        type_ = "boolean",
        json_path = ".status.resourcesCleaned"
    ),
    printcolumn(
        name = "Analysis",
        type_ = "string",
        json_path = ".status.analysisPhase"
    ),
    printcolumn(name = "Review", type_ = "string", json_path = ".status.reviewPhase"),
    printcolumn(
        name = "Results",
        type_ = "string",
        json_path = ".status.resultsURL",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// Display name used by the results site and in PR titles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Series the experiment belongs to (groups experiments on the results site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// Days to keep the experiment (default 1; 0 to 365). Accepted for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 365), extend("default" = 1))]
    pub ttl_days: Option<i64>,
    /// Clusters the experiment runs on, each with its components. Names are unique.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub targets: Vec<Target>,
    /// The Argo Workflow that drives the experiment.
    pub workflow: WorkflowSpec,
    /// Tutorial mode: expose services and kubeconfigs to a reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tutorial: Option<TutorialSpec>,
    /// Prometheus queries collected at the end (default set when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricsQuery>>,
    /// Free tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Publish the results by pull request (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    /// What the experiment sets out to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<HypothesisSpec>,
    /// Re-collect metrics until enough data came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_gate: Option<QualityGateSpec>,
    /// Code excerpts shown with the results, by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_snippets: Option<BTreeMap<String, CodeSnippet>>,
    /// What the AI analyzer writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzer_config: Option<AnalyzerConfig>,
}

/// A cluster the experiment runs on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Target name, unique within the experiment.
    pub name: String,
    /// The cluster.
    pub cluster: ClusterSpec,
    /// Components deployed on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentRef>>,
    /// Telemetry shipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,
    /// Names of targets that must be ready first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<Vec<String>>,
}

/// Cluster shape; unset fields get operator defaults (`us-central1-a`, 1 node, `e2-medium`, 50 GB).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Cluster kind.
    #[serde(rename = "type")]
    pub type_: ClusterType,
    /// GCP zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Node count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i64>,
    /// Machine type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Boot disk size in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_gb: Option<i64>,
    /// Use preemptible (Spot) nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            type_: ClusterType::Hub,
            zone: None,
            node_count: None,
            machine_type: None,
            disk_size_gb: None,
            preemptible: None,
        }
    }
}

/// A component deployed on a target: an app, a workflow or a config, by `Component` name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRef {
    /// `Component` of type `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `Component` of type `workflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// `Component` of type `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Helm parameters for the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// Namespace the component's sources are templated into, overriding each source's
    /// `namespace` (Helm sources get `helm.namespace`, path sources `kustomize.namespace`).
    /// Unset: the sources' own `namespace`, else the Application's destination namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Git revision (branch, tag or commit) for the component's Git sources, overriding their
    /// `targetRevision`; chart sources keep their chart version. Unset: the sources' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub target_revision: Option<String>,
}

/// Telemetry shipping of a target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObservabilitySpec {
    /// Whether telemetry is shipped.
    pub enabled: bool,
    /// How it is shipped.
    pub transport: Transport,
    /// Tenant (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The Argo Workflow of an experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    /// Name of the WorkflowTemplate.
    pub template: String,
    /// When the experiment counts as complete.
    pub completion: CompletionSpec,
    /// Workflow parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
}

impl Default for WorkflowSpec {
    fn default() -> Self {
        Self {
            template: String::new(),
            completion: CompletionSpec {
                mode: CompletionMode::Workflow,
            },
            params: None,
        }
    }
}

/// Completion rule of an experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompletionSpec {
    /// Completion mode.
    pub mode: CompletionMode,
}

/// A Prometheus query collected at the end of the run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsQuery {
    /// Metric name (lower case, digits and `_`, starting with a letter).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub name: String,
    /// PromQL; `$EXPERIMENT`, `$NAMESPACE` and `$DURATION` are substituted.
    pub query: String,
    /// Query kind (default `instant`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "instant"))]
    pub type_: Option<QueryType>,
    /// Unit of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Display group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The experiment's hypothesis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HypothesisSpec {
    /// The claim under test.
    pub claim: String,
    /// Questions the analysis answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<Vec<String>>,
    /// Focus areas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<Vec<String>>,
    /// Measurable criteria deciding the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_criteria: Option<Vec<SuccessCriterion>>,
}

/// A measurable criterion: `<metric> <operator> <value>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuccessCriterion {
    /// Name of a `spec.metrics` entry.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub metric: String,
    /// Comparison.
    pub operator: ComparisonOperator,
    /// Threshold, parsed as a number.
    pub value: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Quality gate: re-collect metrics until enough of them returned data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualityGateSpec {
    /// Whether the gate runs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// Maximum collection attempts, 1 to 5 (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5), extend("default" = 3))]
    pub max_iterations: Option<i64>,
    /// Fraction of metrics that must return data (operator default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_data_coverage: Option<f64>,
    /// Seconds to wait before re-collecting (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 120))]
    pub recollect_delay_seconds: Option<i64>,
}

/// A code excerpt shown with the results.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CodeSnippet {
    /// Title.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Language for highlighting.
    pub language: String,
    /// Repository as `owner/repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// File path in the repository.
    pub path: String,
    /// First line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<i64>,
    /// Last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<i64>,
    /// Git ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    /// Sections that use the snippet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<Vec<String>>,
}

/// What the AI analyzer writes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzerConfig {
    /// Sections to write (at least one).
    #[schemars(length(min = 1))]
    pub sections: Vec<AnalyzerSection>,
}

/// Tutorial mode settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TutorialSpec {
    /// Path of the tutorial file (default `tutorial.yaml`, applied by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Publish each target's kubeconfig as a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_kubeconfig: Option<bool>,
    /// Services whose endpoints are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<TutorialServiceRef>>,
}

/// A Service whose endpoint a tutorial shows.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TutorialServiceRef {
    /// Display name.
    pub name: String,
    /// Target the Service runs on.
    pub target: String,
    /// Service name.
    pub service: String,
    /// Service namespace.
    pub namespace: String,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// Observed state of a lab `Experiment`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ExperimentPhase>,
    /// Per-target state, one entry per target name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetStatus>>,
    /// The Argo Workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_status: Option<WorkflowStatus>,
    /// Tutorial endpoints and kubeconfig Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tutorial_status: Option<TutorialStatus>,
    /// When the experiment completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Whether the external resources were deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_cleaned: Option<bool>,
    /// Where results were stored (`s3://experiment-results/<name>/`, or `disabled`).
    #[serde(
        default,
        rename = "resultsURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub results_url: Option<String>,
    /// Whether the results PR was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    /// Branch of the results PR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_branch: Option<String>,
    /// Number of the results PR.
    #[serde(
        default,
        rename = "publishPRNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_pr_number: Option<i64>,
    /// URL of the results PR.
    #[serde(
        default,
        rename = "publishPRURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_pr_url: Option<String>,
    /// Name of the analyzer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_job_name: Option<String>,
    /// State of the analyzer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_phase: Option<AnalysisPhase>,
    /// `validated`, `invalidated`, `insufficient`, or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis_result: Option<String>,
    /// State of the review gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_phase: Option<ReviewPhase>,
    /// Quality-gate progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration_status: Option<IterationStatus>,
    /// `Ready`, `Provisioned`, `ComponentsHealthy`, `WorkflowSucceeded`, `Failed` and
    /// `UnsupportedFields` (upstream's `QualityGate`, `ReviewGate`, `AnalysisComplete` are not
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}

/// State of one target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// `Pending`, `Provisioning`, `Ready` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `<experiment>-<target>`, or `hub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// API endpoint of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Effective machine type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Effective node count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i64>,
    /// Deployed resources as `Kind/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    /// Secret holding the cluster's kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<String>,
    /// Deployed layers (`infra`, `obs`, `workload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_layers: Option<Vec<String>>,
    /// Whether the ArgoCD Applications were created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_created: Option<bool>,
    /// Whether the target's cluster is registered with Argo CD (its cluster Secret was
    /// written); only for provisioned targets, the hub needs no registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_registered: Option<bool>,
    /// When the target's Application was first seen Synced and Healthy; from then on the
    /// components timeout no longer applies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components_healthy_at: Option<Time>,
    /// How many times the target's claim was deleted and created again because it was not
    /// Ready in time (only with the stuck-claim recreation of the labs configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_recreations: Option<i64>,
}

/// State of the Argo Workflow.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// Workflow name.
    pub name: String,
    /// Argo phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// Tutorial endpoints and kubeconfig Secrets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TutorialStatus {
    /// Discovered services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<TutorialServiceStatus>>,
    /// Target name to kubeconfig Secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secrets: Option<BTreeMap<String, String>>,
}

/// A discovered tutorial service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TutorialServiceStatus {
    /// Display name.
    pub name: String,
    /// Reachable endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether the endpoint is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// Quality-gate progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IterationStatus {
    /// Current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_iteration: Option<i64>,
    /// Attempt limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<i64>,
    /// Gate state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<IterationPhase>,
    /// One result per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_results: Option<Vec<QualityResult>>,
}

/// Outcome of one quality-gate attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualityResult {
    /// Attempt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<i64>,
    /// Metrics queried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_metrics: Option<i64>,
    /// Metrics that returned data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_with_data: Option<i64>,
    /// `metricsWithData / totalMetrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Metrics without data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_metrics: Option<Vec<String>>,
    /// Whether the attempt passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// What was done about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

string_enum! {
    /// What a `Component` deploys.
    pub enum ComponentType as "spec.type" {
        /// An application (ArgoCD Application).
        App => "app",
        /// A workflow.
        Workflow => "workflow",
        /// Configuration.
        Config => "config",
    }
}

string_enum! {
    /// Type of a component parameter.
    #[derive(Default)]
    pub enum ParameterType as "spec.parameters[].type" {
        /// Text.
        #[default]
        String => "string",
        /// Integer.
        Int => "int",
        /// Boolean.
        Bool => "bool",
    }
}

/// A deployable building block of lab experiments (cluster-scoped catalogue entry).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "experiments.illm.io",
    version = "v1alpha1",
    kind = "Component",
    plural = "components",
    singular = "component",
    status = "ComponentStatus",
    derive = "PartialEq",
    cel,
    doc = "A deployable building block of lab experiments: Git or Helm sources plus parameters.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Sources",
        type_ = "string",
        json_path = ".spec.sources[*].repoURL",
        description = "Source repositories"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the component deploys.
    #[serde(rename = "type")]
    pub type_: ComponentType,
    /// Git or Helm sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<ComponentSource>>,
    /// Declared parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<ComponentParameter>>,
    /// How the component exposes metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ComponentObservability>,
}

/// A Git or Helm source of a component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSource {
    /// Git or Helm repository URL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Revision (default `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "HEAD"))]
    pub target_revision: Option<String>,
    /// Path inside a Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Chart name inside a Helm repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Helm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    /// Namespace this source is templated into (Helm sources get `helm.namespace`, path
    /// sources `kustomize.namespace`), instead of the Application's destination namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// Helm settings of a source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// Release name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_files: Option<Vec<String>>,
    /// Parameter overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<HelmParameter>>,
}

/// A Helm parameter override.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    /// Parameter path.
    pub name: String,
    /// Value.
    pub value: String,
    /// Pass the value as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_string: Option<bool>,
}

/// A declared component parameter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentParameter {
    /// Parameter name.
    pub name: String,
    /// Type (default `string`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "string"))]
    pub type_: Option<ParameterType>,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether a value must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// How a component exposes metrics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentObservability {
    /// Whether it ships a ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<bool>,
    /// Whether it ships a PodMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_monitor: Option<bool>,
    /// Labels of its Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Metrics path (default `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "/metrics"))]
    pub metrics_path: Option<String>,
    /// Metrics port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<i64>,
}

/// Observed state of a `Component`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}

impl Experiment {
    /// The `experiments.illm.io/review` decision: `None` when absent, an error when the
    /// annotation holds something other than `approved` or `rejected`.
    pub fn review_decision(&self) -> Option<Result<ReviewDecision, crate::UnknownValue>> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REVIEW))
            .map(|v| v.parse())
    }

    /// `status.phase`, or `Pending` when no phase is recorded yet.
    pub fn phase(&self) -> ExperimentPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}

impl Target {
    /// Names of the targets this one waits for (empty when none).
    pub fn depends_on(&self) -> &[String] {
        self.depends.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_decision_and_phase() {
        let mut exp = Experiment::new("e", ExperimentSpec::default());
        assert_eq!(exp.review_decision(), None);
        assert_eq!(exp.phase(), ExperimentPhase::Pending);
        exp.metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_REVIEW.into(), "approved".into());
        assert_eq!(exp.review_decision(), Some(Ok(ReviewDecision::Approved)));
        exp.metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_REVIEW.into(), "lgtm".into());
        let err = exp
            .review_decision()
            .and_then(Result::err)
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("experiments.illm.io/review: unknown value \"lgtm\"; allowed: approved, rejected")
        );
    }

    #[test]
    fn depends_defaults_to_empty() {
        let mut target = Target::default();
        assert!(target.depends_on().is_empty());
        target.depends = Some(vec!["app".into()]);
        assert_eq!(target.depends_on(), ["app".to_owned()]);
    }
}
