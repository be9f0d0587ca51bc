//! Every watch of every family reads its lists in pages of `LIST_PAGE_SIZE` objects, whether
//! it is a shared watch, a compact cache or a family's own watch (the evaluations' generated
//! objects and gateways, the labs' children). kube's default page of 500 objects, decoded
//! whole, held ~10 MiB at once during a relist of 5,000 Experiments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use agentic_operator::runtime::watches::LIST_PAGE_SIZE;
use http::Request;
use kube::client::{Body, ClientBuilder};
use support::{Operator, Setup, eventually, settings_for};
use tower::util::MapRequestLayer;

/// Watched collections that must have been listed before the check means anything: at
/// least one per kind of watch (shared, compact, the families' own).
const EXPECTED_LISTS: [&str; 8] = [
    "/apis/vteam.ambient-code/v1alpha1/agenticsessions?",
    "/apis/batch/v1/jobs?",
    "/apis/testbench.agentic-layer.ai/v1alpha1/experiments?",
    "/apis/testworkflows.testkube.io/v1/testworkflows?",
    "/apis/tests.testkube.io/v1/testtriggers?",
    "/apis/runtime.agentic-layer.ai/v1alpha1/aigateways?",
    "/apis/experiments.illm.io/v1alpha1/experiments?",
    "/apis/argoproj.io/v1alpha1/applications?",
];

#[tokio::test]
async fn every_watch_of_every_family_lists_in_pages() {
    let mut setup = Setup::new()
        .crds(agentic_api::sessions::GROUP)
        .crds(agentic_api::evaluations::GROUP)
        .crds(agentic_api::labs::GROUP);
    for fixture in [
        "evaluations/agents.runtime.agentic-layer.ai.yaml",
        "evaluations/aigateways.runtime.agentic-layer.ai.yaml",
        "evaluations/testworkflows.testkube.io.yaml",
        "evaluations/testtriggers.tests.testkube.io.yaml",
        "labs/claim-gkecluster.yaml",
        "labs/claim-taloscluster.yaml",
        "labs/claim-vcluster.yaml",
        "labs/argocd-application.yaml",
        "labs/argo-workflow.yaml",
        "labs/argo-workflowtemplate.yaml",
    ] {
        setup = setup.fixture(fixture);
    }
    let cluster = setup.namespace("ambient-code", &[]).start().await;

    // The operator's client records the method and URI of every request it sends.
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = requests.clone();
    let client = ClientBuilder::try_from(cluster.config().clone())
        .unwrap()
        .with_layer(&MapRequestLayer::new(move |request: Request<Body>| {
            record
                .lock()
                .unwrap()
                .push(format!("{} {}", request.method(), request.uri()));
            request
        }))
        .build();
    let operator = Operator::start(
        client,
        settings_for(
            "sessions",
            &[("POD_NAME", "op"), ("NAMESPACE", "ambient-code")],
            |args| args.controllers = None,
        ),
    );

    let listed = |path: &str| {
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains(path) && !r.contains("watch=true"))
    };
    for path in EXPECTED_LISTS {
        eventually(&format!("a list of {path}"), || {
            std::future::ready(listed(path))
        })
        .await;
    }

    // Every list of a watch names a page size (kube's watcher always does), and it is ours.
    let lists: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET ") && !r.contains("watch=true") && r.contains("limit="))
        .cloned()
        .collect();
    let page = format!("limit={LIST_PAGE_SIZE}&");
    let unpaged: Vec<&String> = lists
        .iter()
        .filter(|r| !r.contains(&page) && !r.ends_with(&format!("limit={LIST_PAGE_SIZE}")))
        .collect();
    assert!(
        unpaged.is_empty(),
        "lists with another page size than {LIST_PAGE_SIZE}: {unpaged:#?}"
    );
    assert!(lists.len() >= EXPECTED_LISTS.len(), "{lists:#?}");

    operator.stop().await.unwrap();
    cluster.shutdown().await;
}
