//! Sample objects for every kind, written the way users of each upstream write them.

/// An `AgenticSession` using every spec field, with a status as the operator writes it.
pub const AGENTIC_SESSION: &str = r#"
apiVersion: vteam.ambient-code/v1alpha1
kind: AgenticSession
metadata:
  name: fix-login-bug
  namespace: team-a
  annotations:
    ambient-code.io/desired-phase: Running
    ambient-code.io/start-requested-at: "2026-05-01T09:59:58Z"
  labels:
    ambient-code.io/scheduled-run: "true"
spec:
  displayName: Fix the login redirect
  initialPrompt: Find and fix the login redirect loop, then open a PR.
  repos:
    - url: https://github.com/example/webapp.git
      branch: develop
      autoPush: true
    - url: https://github.com/example/docs.git
  userContext:
    userId: alice
    displayName: Alice Example
    groups:
      - developers
      - reviewers
  llmSettings:
    model: claude-sonnet-4-6
    temperature: 0.7
    maxTokens: 4000
  timeout: 300
  inactivityTimeout: 3600
  stopOnRunFinished: true
  environmentVariables:
    RUNNER_TYPE: claude-agent-sdk
    LOG_LEVEL: debug
  mcpServers:
    custom:
      jira:
        command: npx
        args: ["-y", "mcp-jira"]
        env:
          JIRA_URL: https://jira.example.com
        timeoutSeconds: 30
    disabled:
      - google-workspace
  activeWorkflow:
    gitUrl: https://github.com/ambient-code/workflows.git
    branch: main
    path: workflows/bugfix
status:
  observedGeneration: 2
  phase: Running
  startTime: "2026-05-01T10:00:00Z"
  reconciledRepos:
    - url: https://github.com/example/webapp.git
      name: webapp
      branch: develop
      status: Ready
      clonedAt: "2026-05-01T10:01:00Z"
  reconciledWorkflow:
    gitUrl: https://github.com/ambient-code/workflows.git
    branch: main
    path: workflows/bugfix
    status: Active
    appliedAt: "2026-05-01T10:01:10Z"
  lastActivityTime: "2026-05-01T10:20:00Z"
  sdkSessionId: 7f0c1d7e
  sdkRestartCount: 1
  conditions:
    - type: Ready
      status: "True"
      reason: Running
      message: Runner is running
      lastTransitionTime: "2026-05-01T10:01:30Z"
    - type: PodScheduled
      status: "True"
      reason: Scheduled
      message: Scheduled on node-1
      lastTransitionTime: "2026-05-01T10:00:40Z"
"#;

/// The smallest `AgenticSession` the backend creates.
pub const AGENTIC_SESSION_MINIMAL: &str = r"
apiVersion: vteam.ambient-code/v1alpha1
kind: AgenticSession
metadata:
  name: quick-question
  namespace: team-a
spec:
  initialPrompt: Summarise the open issues.
";

/// A `ProjectSettings` singleton.
pub const PROJECT_SETTINGS: &str = r"
apiVersion: vteam.ambient-code/v1alpha1
kind: ProjectSettings
metadata:
  name: projectsettings
  namespace: team-a
spec:
  groupAccess:
    - groupName: team-a-admins
      role: admin
    - groupName: team-a-devs
      role: edit
    - groupName: auditors
      role: view
  runnerSecretsName: ambient-runner-secrets
  repositories:
    - url: https://github.com/example/webapp.git
      branch: main
      provider: github
    - url: https://gitlab.example.com/example/infra.git
      provider: gitlab
  inactivityTimeoutSeconds: 7200
  mcpServers:
    custom:
      search:
        url: https://mcp.example.com/search
    disabled:
      - github
status:
  groupBindingsCreated: 3
  scheduledSessionRBACReady: true
  limitRangeReady: true
";

/// The V1 upstream sample: S3 dataset and an enabled trigger.
pub const EVAL_V1_DATASET: &str = r"
apiVersion: testbench.agentic-layer.ai/v1alpha1
kind: Experiment
metadata:
  name: experiment-sample
  labels:
    app.kubernetes.io/name: operator
    app.kubernetes.io/managed-by: kustomize
spec:
  agentRef:
    name: weather-agent
    namespace: sample-agents
  llmAsAJudgeModel: gemini-2.5-flash-lite
  defaultThreshold: 0.9
  dataset:
    s3:
      bucket: testbench
      key: dataset.csv
  trigger:
    enabled: true
";

/// V1 inline scenarios with every step field, plus the status the controller writes.
pub const EVAL_V1_SCENARIOS: &str = r#"
apiVersion: testbench.agentic-layer.ai/v1alpha1
kind: Experiment
metadata:
  name: weather-eval
  namespace: testkube
spec:
  agentRef:
    name: weather-agent
    namespace: sample-agents
  llmAsAJudgeModel: gpt-4o
  defaultThreshold: 0.8
  scenarios:
    - name: Weather in New York
      steps:
        - input: What is the weather like in New York right now?
          reference:
            response: It is sunny in New York.
            toolCalls:
              - name: get_weather
                args:
                  city: New York
                  units: metric
            topics:
              - weather
          customValues:
            retrieved_contexts:
              - New York is sunny today.
          metrics:
            - metricName: AgentGoalAccuracyWithoutReference
            - metricName: TopicAdherence
              threshold: 0.75
              parameters:
                mode: precision
            - metricName: ToolCallAccuracy
              threshold: 0
    - name: Forecast follow-up
      steps:
        - input: And tomorrow?
        - input: Thanks!
          metrics:
            - metricName: Faithfulness
  trigger:
    enabled: true
    event: modified
    concurrencyPolicy: Forbid
status:
  conditions:
    - type: Ready
      status: "True"
      reason: ReconcileSucceeded
      message: All resources reconciled successfully
      observedGeneration: 1
      lastTransitionTime: "2026-03-02T08:00:00Z"
    - type: WorkflowReady
      status: "True"
      reason: WorkflowCreated
      message: TestWorkflow created successfully
      observedGeneration: 1
      lastTransitionTime: "2026-03-02T08:00:00Z"
  generatedResources:
    - kind: ConfigMap
      name: weather-eval-experiment
      namespace: testkube
    - kind: TestWorkflow
      name: weather-eval-workflow
      namespace: testkube
  lastExecution:
    executionId: 65f1c0ffee
    executionNumber: 3
    startTime: "2026-03-02T08:01:00Z"
    endTime: "2026-03-02T08:06:00Z"
    status: passed
"#;

/// The V2 sample shape: inline scenarios plus `aiGatewayRef` and `otlpEndpoint`.
pub const EVAL_V2: &str = r"
apiVersion: testbench.agentic-layer.ai/v1alpha1
kind: Experiment
metadata:
  name: experiment-sample
spec:
  agentRef:
    name: weather-agent
    namespace: sample-agents
  aiGatewayRef:
    name: ai-gateway
    namespace: ai-gateway
  otlpEndpoint: http://lgtm.monitoring.svc.cluster.local:4318
  llmAsAJudgeModel: gemini-2.5-flash-lite
  defaultThreshold: 0.9
  scenarios:
    - name: Weather in Berlin
      steps:
        - input: How warm is it in Berlin?
          reference:
            toolCalls:
              - name: get_weather
                args:
                  city: Berlin
          metrics:
            - metricName: ToolCallAccuracy
";

/// The newest upstream shape: `dataset.inline`, `env`, `schedule`, `retrievedContexts`.
pub const EVAL_V5: &str = r#"
apiVersion: testbench.agentic-layer.ai/v1alpha1
kind: Experiment
metadata:
  name: nightly-weather
  namespace: testkube
spec:
  agentRef:
    name: weather-agent
    namespace: sample-agents
  dataset:
    inline:
      llmAsAJudgeModel: gemini-2.5-flash-lite
      defaultThreshold: 0.85
      scenarios:
        - name: Weather in Paris
          steps:
            - input: Is it raining in Paris?
              reference:
                response: No rain in Paris today.
                retrievedContexts:
                  - Paris forecast says dry.
              metrics:
                - metricName: Faithfulness
  env:
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: http://lgtm.monitoring.svc.cluster.local:4318
    - name: OTEL_EXPORTER_OTLP_PROTOCOL
      value: http/protobuf
    - name: OPENAI_API_KEY
      valueFrom:
        secretKeyRef:
          name: openai
          key: api-key
  schedule:
    cron: "0 3 * * *"
    timezone: Europe/Berlin
  trigger:
    enabled: false
    concurrencyPolicy: Replace
"#;

/// A lab experiment using the fields found across upstream's live experiment files.
pub const LAB_EXPERIMENT: &str = r#"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  generateName: gateway-comparison-
  namespace: experiments
spec:
  title: Envoy Gateway vs. NGINX under load
  description: Compare p99 latency of two gateways at 500 rps.
  series: gateways
  tags:
    - networking
    - gateway-api
  publish: true
  ttlDays: 1
  analyzerConfig:
    sections:
      - abstract
      - targetAnalysis
      - metricInsights
      - glossary
  hypothesis:
    claim: Envoy Gateway keeps p99 latency under 250 ms at 500 rps.
    questions:
      - Where does latency come from?
    focus:
      - tail latency
    successCriteria:
      - metric: p99_latency_ms
        operator: lt
        value: "250"
        description: p99 stays under 250 ms
  codeSnippets:
    route:
      name: HTTPRoute
      description: The route under test
      language: yaml
      repo: illMadeCoder/k8s-ai-cloud-testbed
      path: experiments/gateway-comparison/route.yaml
      startLine: 1
      endLine: 24
      ref: main
      usedBy:
        - body
  metrics:
    - name: p99_latency_ms
      query: histogram_quantile(0.99, sum(rate(http_duration_seconds_bucket{namespace="$NAMESPACE"}[$DURATION])) by (le)) * 1000
      type: instant
      unit: ms
      description: p99 request latency
      group: latency
    - name: cpu_cores
      query: sum(rate(container_cpu_usage_seconds_total{namespace="$NAMESPACE"}[5m]))
      type: range
  qualityGate:
    enabled: true
    maxIterations: 3
    minDataCoverage: 0.8
    recollectDelaySeconds: 120
  targets:
    - name: app
      cluster:
        type: gke
        zone: us-central1-a
        machineType: e2-standard-4
        nodeCount: 2
        diskSizeGb: 100
        preemptible: true
      observability:
        enabled: true
        transport: tailscale
      components:
        - app: envoy-gateway
          params:
            replicas: "2"
        - config: gateway-routes
    - name: loadgen
      depends:
        - app
      cluster:
        type: hub
      components:
        - workflow: k6-loadgen
  workflow:
    template: gateway-comparison
    completion:
      mode: workflow
    params:
      duration: 5m
  tutorial:
    path: tutorial.yaml
    exposeKubeconfig: true
    services:
      - name: grafana
        target: app
        service: grafana
        namespace: observability
        port: 3000
status:
  phase: Complete
  targets:
    - name: app
      phase: Ready
      clusterName: gateway-comparison-x7k2p-app
      endpoint: 34.1.2.3
      machineType: e2-standard-4
      nodeCount: 2
      deployedLayers:
        - infra
        - workload
      appsCreated: true
      kubeconfigSecret: gateway-comparison-x7k2p-app-kubeconfig
    - name: loadgen
      phase: Ready
      clusterName: hub
      components:
        - Deployment/k6
  workflowStatus:
    name: gateway-comparison-x7k2p
    phase: Succeeded
    startedAt: "2026-02-20T10:00:00Z"
    finishedAt: "2026-02-20T10:12:00Z"
  tutorialStatus:
    services:
      - name: grafana
        endpoint: http://34.1.2.4:3000
        ready: true
    kubeconfigSecrets:
      app: gateway-comparison-x7k2p-app-kubeconfig
  completedAt: "2026-02-20T10:15:00Z"
  resourcesCleaned: true
  resultsURL: s3://experiment-results/gateway-comparison-x7k2p/
  published: true
  publishBranch: results/gateway-comparison-x7k2p
  publishPRNumber: 42
  publishPRURL: https://github.com/illMadeCoder/k8s-ai-cloud-testbed/pull/42
  analysisJobName: gateway-comparison-x7k2p-analyzer
  analysisPhase: Succeeded
  hypothesisResult: validated
  reviewPhase: Approved
  iterationStatus:
    currentIteration: 2
    maxIterations: 3
    phase: Passed
    qualityResults:
      - iteration: 1
        totalMetrics: 2
        metricsWithData: 1
        coverage: 0.5
        missingMetrics:
          - cpu_cores
        passed: false
        remedy: recollect
      - iteration: 2
        totalMetrics: 2
        metricsWithData: 2
        coverage: 1.0
        passed: true
  conditions:
    - type: AnalysisComplete
      status: "True"
      reason: Succeeded
      message: Analyzer job completed
      observedGeneration: 1
      lastTransitionTime: "2026-02-20T10:14:00Z"
    - type: ReviewGate
      status: "True"
      reason: Approved
      message: Results PR merged
      observedGeneration: 1
      lastTransitionTime: "2026-02-20T11:00:00Z"
"#;

/// A lab Component with Helm and Git sources.
pub const LAB_COMPONENT: &str = r#"
apiVersion: experiments.illm.io/v1alpha1
kind: Component
metadata:
  name: envoy-gateway
spec:
  type: app
  description: Envoy Gateway with its CRDs
  sources:
    - repoURL: https://charts.example.com/envoy
      targetRevision: v1.2.0
      chart: gateway-helm
      helm:
        releaseName: eg
        valuesFiles:
          - values.yaml
        parameters:
          - name: deployment.replicas
            value: "2"
            forceString: true
    - repoURL: https://github.com/illMadeCoder/k8s-ai-cloud-testbed.git
      path: components/apps/envoy-gateway/manifests
  parameters:
    - name: replicas
      type: int
      default: "1"
      description: Gateway replicas
      required: false
  observability:
    serviceMonitor: true
    podMonitor: false
    podLabels:
      app.kubernetes.io/name: envoy
    metricsPath: /stats/prometheus
    metricsPort: 19001
"#;
