//! The simulated scheduler, kubelet, Job and Deployment controllers and the lab simulators'
//! default delay, each test against its
//! own cluster.

// Test helpers fail the test on any unexpected error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use devcluster::DevCluster;
use devcluster::simulators::{DEFAULT_NODE_NAME, Simulators};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_mins(1);

async fn cluster() -> DevCluster {
    DevCluster::builder()
        .with_simulators(Simulators::all())
        .start()
        .await
        .unwrap()
}

/// Polls `f` until it returns `Some`, or fails the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job(name: &str, extra_spec: &Value, annotations: &Value) -> Job {
    let mut spec = json!({
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36"}],
            },
        },
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn pod(name: &str, restart: &str, annotations: &Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    }))
    .unwrap()
}

fn status(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()["status"].clone()
}

fn condition<'a>(status: &'a Value, ty: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn is_true(status: &Value, ty: &str) -> bool {
    condition(status, ty).is_some_and(|c| c["status"] == "True")
}

async fn job_status(api: &Api<Job>, name: &str) -> Value {
    status(&api.get(name).await.unwrap())
}

async fn job_pods(client: &Client, job: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn job_whose_pod_exits_zero_completes() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("ok", &json!({}), &json!({})))
        .await
        .unwrap();
    let st = eventually("the Job to complete", || async {
        let s = job_status(&jobs, "ok").await;
        is_true(&s, "Complete").then_some(s)
    })
    .await;
    assert_eq!(st["succeeded"], 1);
    assert!(st["active"].is_null(), "{st}");
    assert!(st["startTime"].is_string());
    assert!(st["completionTime"].is_string());
    assert!(is_true(&st, "SuccessCriteriaMet"), "{st}");
    assert_eq!(
        condition(&st, "Complete").unwrap()["reason"],
        "CompletionsReached"
    );

    let j = jobs.get("ok").await.unwrap();
    let pods = job_pods(&client, "ok").await;
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert!(p.name_any().starts_with("ok-"), "{}", p.name_any());
    assert_eq!(p.name_any().len(), "ok-".len() + 5);
    let labels = p.labels();
    assert_eq!(labels["job-name"], "ok");
    assert_eq!(labels["controller-uid"], j.uid().unwrap());
    assert_eq!(
        labels["batch.kubernetes.io/controller-uid"],
        j.uid().unwrap()
    );
    let owner = &p.owner_references()[0];
    assert_eq!(owner.kind, "Job");
    assert_eq!(owner.uid, j.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        p.spec.as_ref().unwrap().node_name.as_deref(),
        Some(DEFAULT_NODE_NAME)
    );
    let ps = status(p);
    assert_eq!(ps["phase"], "Succeeded");
    assert!(is_true(&ps, "PodScheduled"));
    assert!(is_true(&ps, "Initialized"));
    assert_eq!(condition(&ps, "Ready").unwrap()["reason"], "PodCompleted");
    assert!(ps["podIP"].is_string());
    assert!(ps["startTime"].is_string());
    let term = &ps["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 0);
    assert_eq!(term["reason"], "Completed");
}

#[tokio::test]
async fn failing_job_retries_up_to_backoff_limit_then_fails() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let ann = json!({"devcluster.io/exit-code": "1", "devcluster.io/run-seconds": "0.2"});
    jobs.create(
        &PostParams::default(),
        &job("bad", &json!({"backoffLimit": 1}), &ann),
    )
    .await
    .unwrap();
    let st = eventually("the Job to fail", || async {
        let s = job_status(&jobs, "bad").await;
        is_true(&s, "Failed").then_some(s)
    })
    .await;
    assert_eq!(st["failed"], 2, "{st}");
    assert!(st["succeeded"].is_null(), "{st}");
    assert_eq!(
        condition(&st, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert!(is_true(&st, "FailureTarget"), "{st}");
    assert!(!is_true(&st, "Complete"));
    let pods = job_pods(&client, "bad").await;
    assert_eq!(pods.len(), 2, "one pod and one retry");
    for p in &pods {
        let ps = status(p);
        assert_eq!(ps["phase"], "Failed");
        assert_eq!(
            ps["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
    }
}

/// The resourceVersion of the first event of `api`'s watch (from `rv`) that `hit` accepts.
async fn first_event_rv<K>(api: &Api<K>, rv: &str, hit: impl Fn(&WatchEvent<K>) -> bool) -> u64
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    let stream = api.watch(&WatchParams::default(), rv).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.next().await {
            let event = event.unwrap();
            if hit(&event) {
                return event;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the awaited event within the deadline");
    let object = match &found {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
        other => panic!("unexpected watch event {other:?}"),
    };
    object.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn active_deadline_fails_the_job_with_deadline_exceeded() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(
            &PostParams::default(),
            &job(
                "slow",
                &json!({"activeDeadlineSeconds": 1}),
                &json!({"devcluster.io/run-seconds": "forever"}),
            ),
        )
        .await
        .unwrap();
    // As Kubernetes 1.31+ does, the failure is announced (FailureTarget) before the pod is
    // terminated, so a watcher learns why the pod goes no later than it sees it go.
    let from = created.resource_version().unwrap();
    let announced = first_event_rv(&jobs, &from, |e| {
        matches!(e, WatchEvent::Modified(j) if is_true(
            &serde_json::to_value(&j.status).unwrap(), "FailureTarget"))
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod_going = first_event_rv(&pods, &from, |e| match e {
        WatchEvent::Deleted(_) => true,
        WatchEvent::Modified(p) => p.metadata.deletion_timestamp.is_some(),
        _ => false,
    });
    let (announced, pod_going) = tokio::join!(announced, pod_going);
    assert!(
        announced < pod_going,
        "FailureTarget at {announced}, pod deletion at {pod_going}"
    );
    let st = eventually("the Job to hit its deadline", || async {
        let s = job_status(&jobs, "slow").await;
        is_true(&s, "Failed").then_some(s)
    })
    .await;
    let failed = condition(&st, "Failed").unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(
        failed["message"],
        "Job was active longer than specified deadline"
    );
    assert!(st["active"].is_null(), "{st}");
    eventually("the running pod to be killed", || async {
        job_pods(&client, "slow").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn finished_job_is_deleted_after_its_ttl() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(
            &PostParams::default(),
            &job(
                "short",
                &json!({"ttlSecondsAfterFinished": 3}),
                &json!({"devcluster.io/run-seconds": "0.1"}),
            ),
        )
        .await
        .unwrap();
    // Read from the watch, so a test that gets the CPU late still sees the Job complete
    // before it goes.
    let from = created.resource_version().unwrap();
    let completed = first_event_rv(
        &jobs,
        &from,
        |e| matches!(e, WatchEvent::Modified(j) if is_true(&status(j), "Complete")),
    )
    .await;
    let deleted = first_event_rv(&jobs, &from, |e| matches!(e, WatchEvent::Deleted(_))).await;
    assert!(
        completed < deleted,
        "completed at {completed}, deleted at {deleted}"
    );
    assert!(jobs.get_opt("short").await.unwrap().is_none());
    eventually("its pods to be collected", || async {
        job_pods(&client, "short").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn suspended_job_runs_no_pod_until_resumed() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("later", &json!({"suspend": true}), &json!({})),
    )
    .await
    .unwrap();
    let st = eventually("the Suspended condition", || async {
        let s = job_status(&jobs, "later").await;
        is_true(&s, "Suspended").then_some(s)
    })
    .await;
    assert_eq!(
        condition(&st, "Suspended").unwrap()["reason"],
        "JobSuspended"
    );
    assert!(job_pods(&client, "later").await.is_empty());
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let st = eventually("the resumed Job to complete", || async {
        let s = job_status(&jobs, "later").await;
        is_true(&s, "Complete").then_some(s)
    })
    .await;
    assert_eq!(condition(&st, "Suspended").unwrap()["status"], "False");
    assert_eq!(condition(&st, "Suspended").unwrap()["reason"], "JobResumed");
}

#[tokio::test]
async fn oom_kill_terminates_the_container_with_137() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "oom",
            "Never",
            &json!({"devcluster.io/oom-kill": "true", "devcluster.io/run-seconds": "0.2"}),
        ),
    )
    .await
    .unwrap();
    let st = eventually("the pod to fail", || async {
        let s = status(&pods.get("oom").await.unwrap());
        (s["phase"] == "Failed").then_some(s)
    })
    .await;
    let t = &st["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled");
    assert_eq!(t["exitCode"], 137);
    assert!(t["startedAt"].is_string() && t["finishedAt"].is_string());
}

#[tokio::test]
async fn image_pull_failure_keeps_the_pod_pending_in_back_off() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "pull",
            "Always",
            &json!({"devcluster.io/image-pull-failure": "true"}),
        ),
    )
    .await
    .unwrap();
    let first = eventually("an image pull error", || async {
        let s = status(&pods.get("pull").await.unwrap());
        let reason = s["containerStatuses"][0]["state"]["waiting"]["reason"].clone();
        (reason == "ErrImagePull" || reason == "ImagePullBackOff").then_some(s)
    })
    .await;
    assert_eq!(first["phase"], "Pending");
    let st = eventually("ImagePullBackOff", || async {
        let s = status(&pods.get("pull").await.unwrap());
        (s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff").then_some(s)
    })
    .await;
    assert_eq!(st["phase"], "Pending");
    assert!(
        st["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("busybox:1.36")
    );
    assert_eq!(condition(&st, "Ready").unwrap()["status"], "False");
}

#[tokio::test]
async fn unschedulable_pod_stays_pending_with_the_condition() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "nowhere",
            "Always",
            &json!({"devcluster.io/unschedulable": "true"}),
        ),
    )
    .await
    .unwrap();
    let st = eventually("the Unschedulable condition", || async {
        let s = status(&pods.get("nowhere").await.unwrap());
        condition(&s, "PodScheduled")
            .is_some_and(|c| c["status"] == "False")
            .then_some(s)
    })
    .await;
    let cond = condition(&st, "PodScheduled").unwrap();
    assert_eq!(cond["reason"], "Unschedulable");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .starts_with("0/1 nodes are available")
    );
    assert_eq!(st["phase"], "Pending");
    let p = pods.get("nowhere").await.unwrap();
    assert!(p.spec.unwrap().node_name.is_none());
    assert!(st["containerStatuses"].is_null());
}

#[tokio::test]
async fn server_pod_runs_until_deleted_and_sidecar_outlives_main() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(&PostParams::default(), &pod("web", "Always", &json!({})))
        .await
        .unwrap();
    let st = eventually("the pod to be ready", || async {
        let s = status(&pods.get("web").await.unwrap());
        is_true(&s, "Ready").then_some(s)
    })
    .await;
    assert_eq!(st["phase"], "Running");
    for ty in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(is_true(&st, ty), "{ty}: {st}");
    }
    assert!(st["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
    assert_eq!(st["containerStatuses"][0]["ready"], true);

    let two: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runner", "annotations": {
            "devcluster.io/run-seconds.main": "0.3",
            "devcluster.io/exit-code.main": "0",
        }},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
            "containers": [
                {"name": "main", "image": "busybox:1.36"},
                {"name": "sidecar", "image": "busybox:1.36"},
            ],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &two).await.unwrap();
    let st = eventually("main to terminate", || async {
        let s = status(&pods.get("runner").await.unwrap());
        s["containerStatuses"][0]["state"]["terminated"]
            .is_object()
            .then_some(s)
    })
    .await;
    assert_eq!(st["phase"], "Running");
    assert_eq!(
        st["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(st["containerStatuses"][1]["state"]["running"].is_object());

    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the deleted pod to go", || async {
        pods.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleted_pod_with_a_finalizer_is_stopped_and_kept() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let mut p = pod("held", "Always", &json!({}));
    p.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually("the pod to run", || async {
        let s = status(&pods.get("held").await.unwrap());
        (s["phase"] == "Running").then_some(())
    })
    .await;
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    let st = eventually("the kubelet to stop the containers", || async {
        let s = status(&pods.get("held").await.unwrap());
        (s["phase"] == "Failed").then_some(s)
    })
    .await;
    assert!(st["containerStatuses"][0]["state"]["terminated"].is_object());
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the pod to go once released", || async {
        pods.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deployment_becomes_available() {
    let c = cluster().await;
    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let st = eventually("the Deployment to be available", || async {
        let s = status(&deploys.get("web").await.unwrap());
        (is_true(&s, "Available") && s["readyReplicas"] == 3).then_some(s)
    })
    .await;
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["observedGeneration"], 1);
    let p = condition(&st, "Progressing").unwrap();
    assert_eq!(p["status"], "True");
    assert_eq!(p["reason"], "NewReplicaSetAvailable");

    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    eventually("the scaled Deployment to be observed", || async {
        let s = status(&deploys.get("web").await.unwrap());
        (s["observedGeneration"] == 2 && s["availableReplicas"] == 5).then_some(())
    })
    .await;
}

#[tokio::test]
async fn simulators_run_as_a_client_of_another_cluster() {
    // A plain cluster, and the simulators connected to it through its kubeconfig.
    let target = DevCluster::start().await.unwrap();
    let client = devcluster::simulators::connect(Some(target.kubeconfig_path()))
        .await
        .unwrap();
    let sims = tokio::spawn(Simulators::all().run(client));
    let jobs: Api<Job> = Api::namespaced(target.client(), "default");
    jobs.create(
        &PostParams::default(),
        &job("remote", &json!({}), &json!({})),
    )
    .await
    .unwrap();
    eventually("the Job to complete", || async {
        let s = job_status(&jobs, "remote").await;
        is_true(&s, "Complete").then_some(())
    })
    .await;
    sims.abort();
}

#[tokio::test]
async fn without_simulators_pods_stay_unbound() {
    let c = DevCluster::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(&PostParams::default(), &pod("idle", "Always", &json!({})))
        .await
        .unwrap();
    // Give a simulator (if one were wrongly running) time to act, then check nothing did.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = pods.get("idle").await.unwrap();
    assert_eq!(status(&p)["phase"], "Pending");
    assert!(p.spec.unwrap().node_name.is_none());
}

#[tokio::test]
async fn jobs_cost_a_bounded_number_of_writes_and_none_when_settled() {
    const N: usize = 20;
    let c = cluster().await;
    let jobs: Api<Job> = Api::namespaced(c.client(), "default");
    c.cluster().reset_stats();
    for i in 0..N {
        jobs.create(
            &PostParams::default(),
            &job(
                &format!("batch-{i}"),
                &json!({}),
                &json!({"devcluster.io/run-seconds": "0.2"}),
            ),
        )
        .await
        .unwrap();
    }
    eventually("every Job to complete", || async {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .all(|j| is_true(&status(j), "Complete"))
            .then_some(())
    })
    .await;
    let stats = c.stats();
    eprintln!("{stats:#?}");
    // Job create, pod create, binding, three kubelet status writes, three Job status
    // writes and the finalizer removal make ten per Job; a polling loop would be far
    // above this bound.
    assert!(
        stats.writes <= u64::try_from(N * 16).unwrap(),
        "{} writes for {N} Jobs",
        stats.writes
    );
    // The reconcile that writes a Job's Complete removes its pod's tracking finalizer just
    // after: wait for a second without writes (at most 30) before counting, so that late
    // write is not taken for a loop.
    let mut last = c.stats().writes;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = c.stats().writes;
        if now == last {
            break;
        }
        last = now;
    }
    c.cluster().reset_stats();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = c.stats();
    assert_eq!(
        settled.writes, 0,
        "writes after every Job finished: {settled:#?}"
    );
}

/// Kills the child process when the test ends, whatever the outcome.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Reads the child's stdout until a line starts with `prefix`; returns that line.
async fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let out = child.0.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(DEADLINE, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with(prefix) {
                return l;
            }
        }
        panic!("the process exited before printing {prefix:?}");
    })
    .await
    .unwrap();
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

#[tokio::test]
async fn simulate_subcommand_drives_a_separately_started_cluster() {
    let target = DevCluster::start().await.unwrap();
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
            .arg("simulate")
            .arg("--kubeconfig")
            .arg(target.kubeconfig_path())
            .arg("--simulators")
            .arg("scheduler,kubelet,jobs")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    let line = wait_for_line(&mut child, "simulating").await;
    assert_eq!(line, "simulating scheduler,kubelet,jobs");
    let jobs: Api<Job> = Api::namespaced(target.client(), "default");
    jobs.create(
        &PostParams::default(),
        &job("via-cli", &json!({}), &json!({})),
    )
    .await
    .unwrap();
    eventually("the Job to complete", || async {
        let s = job_status(&jobs, "via-cli").await;
        is_true(&s, "Complete").then_some(())
    })
    .await;
    // Deployments were not asked for, so nothing reports their status.
    let deploys: Api<Deployment> = Api::namespaced(target.client(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "idle"},
        "spec": {"selector": {"matchLabels": {"app": "idle"}}, "template": {
            "metadata": {"labels": {"app": "idle"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(status(&deploys.get("idle").await.unwrap())["observedGeneration"].is_null());
}

#[tokio::test]
async fn serve_runs_simulators_in_process_by_default() {
    let dir = std::env::temp_dir().join(format!(
        "devcluster-sim-serve-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
            .arg("serve")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    wait_for_line(&mut child, "ready").await;
    let client = devcluster::simulators::connect(Some(&kubeconfig))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("served", "Always", &json!({})))
        .await
        .unwrap();
    eventually("the pod to run", || async {
        let s = status(&pods.get("served").await.unwrap());
        (s["phase"] == "Running").then_some(())
    })
    .await;
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

#[tokio::test]
async fn on_failure_restarts_count_against_the_backoff_limit() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut j = job(
        "crashy",
        &json!({"backoffLimit": 1}),
        &json!({"devcluster.io/exit-code": "2", "devcluster.io/run-seconds": "0.1"}),
    );
    j.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("OnFailure".into());
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let st = eventually("the Job to fail", || async {
        let s = job_status(&jobs, "crashy").await;
        is_true(&s, "Failed").then_some(s)
    })
    .await;
    assert_eq!(
        condition(&st, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    eventually("the restarting pod to be deleted", || async {
        job_pods(&client, "crashy").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn annotating_a_running_pod_rescripts_it() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(&PostParams::default(), &pod("agent", "Never", &json!({})))
        .await
        .unwrap();
    eventually("the pod to run", || async {
        let s = status(&pods.get("agent").await.unwrap());
        (s["phase"] == "Running").then_some(())
    })
    .await;
    pods.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "devcluster.io/exit-code": "3",
            "devcluster.io/run-seconds": "0",
        }}})),
    )
    .await
    .unwrap();
    let st = eventually("the pod to fail", || async {
        let s = status(&pods.get("agent").await.unwrap());
        (s["phase"] == "Failed").then_some(s)
    })
    .await;
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
}

#[tokio::test]
async fn deleting_a_running_job_pod_counts_as_a_failure() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "victim",
            &json!({"backoffLimit": 0}),
            &json!({"devcluster.io/run-seconds": "forever"}),
        ),
    )
    .await
    .unwrap();
    let running = eventually("the pod to run", || async {
        job_pods(&client, "victim")
            .await
            .into_iter()
            .find(|p| status(p)["phase"] == "Running")
    })
    .await;
    assert!(
        running
            .finalizers()
            .contains(&"batch.kubernetes.io/job-tracking".to_string())
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete(&running.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let st = eventually("the Job to fail", || async {
        let s = job_status(&jobs, "victim").await;
        is_true(&s, "Failed").then_some(s)
    })
    .await;
    assert_eq!(st["failed"], 1, "{st}");
    assert_eq!(
        condition(&st, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    eventually("the deleted pod to go", || async {
        job_pods(&client, "victim").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_running_job_releases_its_pods() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    for (name, policy) in [
        ("bg", kube::api::PropagationPolicy::Background),
        ("fg", kube::api::PropagationPolicy::Foreground),
    ] {
        jobs.create(
            &PostParams::default(),
            &job(
                name,
                &json!({}),
                &json!({"devcluster.io/run-seconds": "forever"}),
            ),
        )
        .await
        .unwrap();
        eventually("the pod to run", || async {
            job_pods(&client, name)
                .await
                .iter()
                .any(|p| status(p)["phase"] == "Running")
                .then_some(())
        })
        .await;
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        jobs.delete(name, &dp).await.unwrap();
        eventually("the Job and its pods to go", || async {
            let gone = jobs.get_opt(name).await.unwrap().is_none()
                && job_pods(&client, name).await.is_empty();
            gone.then_some(())
        })
        .await;
    }
}

/// The Job controller and kubelet retry their pod writes that failed on the server's side
/// (500) instead of taking them as done: a deleted Job's running pod still loses its tracking
/// finalizer and goes once the faults stop. (Before, one failed finalizer removal left the pod
/// terminating for ever.)
#[tokio::test]
async fn pod_writes_that_fail_on_the_server_are_retried() {
    let c = cluster().await;
    let client = c.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "flaky",
            &json!({}),
            &json!({"devcluster.io/run-seconds": "forever"}),
        ),
    )
    .await
    .unwrap();
    eventually("the pod to run", || async {
        job_pods(&client, "flaky")
            .await
            .iter()
            .any(|p| status(p)["phase"] == "Running")
            .then_some(())
    })
    .await;
    c.set_faults(devcluster::FaultConfig {
        error_rate: 1.0,
        error_codes: vec![500],
        verbs: vec!["patch".into(), "delete".into()],
        resources: vec!["pods".into()],
        ..devcluster::FaultConfig::default()
    })
    .unwrap();
    jobs.delete("flaky", &DeleteParams::background())
        .await
        .unwrap();
    eventually("pod writes to fail", || async {
        let stats = c.stats();
        (stats.get("patch", "pods").errors >= 2).then_some(())
    })
    .await;
    c.clear_faults();
    eventually("the Job's pod to go", || async {
        job_pods(&client, "flaky").await.is_empty().then_some(())
    })
    .await;
}

/// `--sim-delay-seconds` is the delay of a claim that carries no delay annotation; a
/// `devcluster.io/ready-seconds` annotation still wins. A value that is not a non-negative
/// number is refused at start-up, naming the flag and the allowed values.
#[tokio::test]
async fn sim_delay_flag_sets_the_default_and_annotations_still_win() {
    for bad in ["soon", "-1", "forever"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
            .args(["simulate", "--simulators", "crossplane"])
            .arg(format!("--sim-delay-seconds={bad}"))
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--sim-delay-seconds") && err.contains("allowed: decimal seconds"),
            "{err}"
        );
    }

    let target = DevCluster::start().await.unwrap();
    let crd: Value =
        serde_yaml::from_str(include_str!("../fixtures/labs/claim-vcluster.yaml")).unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(target.client());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let ar = kube::api::ApiResource {
        group: "illm.io".into(),
        version: "v1alpha1".into(),
        api_version: "illm.io/v1alpha1".into(),
        kind: "VCluster".into(),
        plural: "vclusters".into(),
    };
    let claims: Api<kube::api::DynamicObject> =
        Api::namespaced_with(target.client(), "default", &ar);
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
            .arg("simulate")
            .arg("--kubeconfig")
            .arg(target.kubeconfig_path())
            .args(["--simulators", "crossplane", "--sim-delay-seconds", "3600"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    wait_for_line(&mut child, "simulating").await;
    for (name, annotations) in [
        ("slow", json!({})),
        ("quick", json!({"devcluster.io/ready-seconds": "0"})),
    ] {
        let claim = json!({
            "apiVersion": "illm.io/v1alpha1", "kind": "VCluster",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {}
        });
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(claim).unwrap(),
            )
            .await
            .unwrap();
    }
    let claim_status = |name: &'static str| {
        let claims = claims.clone();
        async move { serde_json::to_value(claims.get(name).await.unwrap()).unwrap()["status"].clone() }
    };
    eventually("the annotated claim to be Ready", || async {
        is_true(&claim_status("quick").await, "Ready").then_some(())
    })
    .await;
    let slow = eventually("the other claim to be Synced", || async {
        let s = claim_status("slow").await;
        is_true(&s, "Synced").then_some(s)
    })
    .await;
    assert!(!is_true(&slow, "Ready"), "{slow}");
    // Well past the built-in 0.1 s default, it is still being created.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let slow = claim_status("slow").await;
    assert_eq!(
        condition(&slow, "Ready").unwrap()["reason"],
        "Creating",
        "{slow}"
    );
}
