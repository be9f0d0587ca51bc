//! Two replicas with leader election against a dev cluster that enforces RBAC, each with its
//! own `ServiceAccount` holding the shipped permissions: exactly one leads, the standby makes
//! no write and starts no watch (upstream ran its namespace and `ProjectSettings` watchers on
//! every replica, and shipped no Lease permissions), and killing the leader lets the standby
//! take over and reconcile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use agentic_api::sessions::ProjectSettings;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use serde_json::json;
use support::{
    MANAGED, OPERATOR_USER, Operator, cluster, create, eventually, install, namespace,
    rbac_documents, settings, wait_for,
};

const LEASE: &str = "agentic-operator-leader";
const STANDBY_USER: &str = "system:serviceaccount:ambient-code:agentic-operator-b";

/// Settings of one replica. The renew deadline is long enough that a leader slowed down by a
/// loaded machine keeps its Lease; the Lease is short enough that the takeover after a crash
/// comes well within the test's deadline.
fn replica(pod: &str) -> agentic_operator::runtime::config::Settings {
    settings(pod, |a| {
        a.leader_elect = true;
        a.leader_election_namespace = Some("ambient-code".into());
        a.lease_duration = Duration::from_secs(10);
        a.renew_deadline = Duration::from_secs(8);
        a.retry_period = Duration::from_millis(500);
    })
}

fn leading(operator: &Operator) -> bool {
    operator.metric("leader_election_master_status", &[("name", LEASE)]) == 1
}

async fn holder(admin: &Client) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), "ambient-code")
        .get_opt(LEASE)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn ready_project(admin: &Client, ns: &str) {
    wait_for(&format!("{ns}/projectsettings to be Ready"), || async {
        let ps = Api::<ProjectSettings>::namespaced(admin.clone(), ns)
            .get_opt("projectsettings")
            .await
            .unwrap()?;
        ps.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_standby_idle_and_takeover_after_a_crash() {
    let cluster = cluster(true).await;
    let admin = cluster.client();
    install(&admin, &rbac_documents()).await;
    // A second replica identity with the same permissions.
    for doc in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "agentic-operator-b", "namespace": "ambient-code"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "agentic-operator-b"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "agentic-operator"},
               "subjects": [{"kind": "ServiceAccount", "name": "agentic-operator-b",
                             "namespace": "ambient-code"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "agentic-operator-b", "namespace": "ambient-code"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "agentic-operator-leader-election"},
               "subjects": [{"kind": "ServiceAccount", "name": "agentic-operator-b",
                             "namespace": "ambient-code"}]}),
    ] {
        create(&admin, &doc).await;
    }
    let client_a = cluster
        .service_account_client("ambient-code", "agentic-operator")
        .await
        .unwrap();
    let client_b = cluster
        .service_account_client("ambient-code", "agentic-operator-b")
        .await
        .unwrap();

    let a = Operator::start(client_a, replica("op-a"));
    eventually("replica a to lead", || async { leading(&a) }).await;
    let b = Operator::start(client_b, replica("op-b"));
    namespace(&admin, "team-h", &[MANAGED]).await;
    ready_project(&admin, "team-h").await;
    // The standby has polled the Lease by now (several retry periods have passed while the
    // project converged); make sure it has been seen at least once.
    let audit = cluster.auth().unwrap().audit();
    eventually("the standby to poll the Lease", || async {
        audit
            .decisions()
            .iter()
            .any(|d| d.user == STANDBY_USER && d.resource == "leases")
    })
    .await;
    assert!(leading(&a) && !leading(&b), "exactly one replica leads");
    assert!(holder(&admin).await.unwrap().starts_with("op-a"));
    let standby_requests: Vec<_> = audit
        .decisions()
        .into_iter()
        .filter(|d| d.user == STANDBY_USER)
        .filter(|d| d.path.is_empty() || d.path.starts_with("/api"))
        .filter(|d| !(d.resource == "leases" && d.verb == "get"))
        .filter(|d| !(d.resource.is_empty() && d.verb == "get"))
        .collect();
    assert!(
        standby_requests.is_empty(),
        "a standby only reads the Lease (and discovery): {standby_requests:#?}"
    );

    // Crash the leader: no release, so the standby waits for the Lease to expire.
    a.task.abort();
    eventually("replica b to take over", || async { leading(&b) }).await;
    assert!(holder(&admin).await.unwrap().starts_with("op-b"));
    namespace(&admin, "team-h2", &[MANAGED]).await;
    ready_project(&admin, "team-h2").await;
    let writes_by_b = audit
        .decisions()
        .into_iter()
        .filter(|d| d.user == STANDBY_USER && d.verb == "create" && d.resource == "projectsettings")
        .count();
    assert!(writes_by_b >= 1, "the new leader reconciles");
    assert!(
        audit.denied(STANDBY_USER).is_empty() && audit.denied(OPERATOR_USER).is_empty(),
        "no request of either replica was refused"
    );

    // A clean shutdown releases the Lease at once.
    b.stop().await.unwrap();
    assert_eq!(
        holder(&admin).await,
        None,
        "the Lease is released on shutdown"
    );
}

/// The Lease's renew time, with its holder.
async fn renewal(admin: &Client) -> Option<(String, jiff::Timestamp)> {
    let spec = Api::<Lease>::namespaced(admin.clone(), "ambient-code")
        .get_opt(LEASE)
        .await
        .unwrap()?
        .spec?;
    Some((spec.holder_identity?, spec.renew_time?.0))
}

/// A leader that is shutting down keeps renewing its Lease while its in-flight reconciles
/// finish (they may still write), and releases it only afterwards: before, renewals stopped
/// with the signal, so a standby took over after one lease duration while the old leader's
/// reconciles still wrote for up to 30 s. Its admission webhook also keeps accepting
/// connections until then (before, it closed at the signal), and closes at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one shutdown, checked step by step
async fn the_lease_is_renewed_until_in_flight_reconciles_finish() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = cluster(false).await;
    let admin = cluster.client();
    namespace(&admin, "ambient-code", &[]).await;
    let certs_dir = std::env::temp_dir().join(format!(
        "agentic-ha-webhook-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    devcluster::admission::WebhookCertificates::generate(&["webhook.test"])
        .unwrap()
        .write_to(&certs_dir)
        .unwrap();
    let webhook = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = agentic_operator::webhook::WebhookOptions {
        address: agentic_operator::runtime::config::BindAddress::Listen(webhook),
        cert_dir: certs_dir.clone(),
        labs: None,
    };
    let manager = agentic_operator::runtime::manager::Manager::new(
        settings("op-a", |a| {
            a.leader_elect = true;
            a.leader_election_namespace = Some("ambient-code".into());
            a.lease_duration = Duration::from_secs(3);
            a.renew_deadline = Duration::from_secs(2);
            a.retry_period = Duration::from_millis(200);
        }),
        agentic_operator::families(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let op = Operator {
        metrics: manager.metrics().clone(),
        shutdown: shutdown.clone(),
        task: tokio::spawn(agentic_operator::webhook::serve_and_run(
            manager,
            options,
            admin.clone(),
            shutdown,
        )),
    };
    eventually("the replica to lead", || async { leading(&op) }).await;
    let accepts = || async { tokio::net::TcpStream::connect(webhook).await.is_ok() };
    assert!(accepts().await, "the webhook listens");

    // A project's reconcile hangs on its ServiceAccount write.
    cluster
        .set_faults(devcluster::FaultConfig {
            paused: true,
            verbs: vec!["patch".into()],
            resources: vec!["serviceaccounts".into()],
            ..devcluster::FaultConfig::default()
        })
        .unwrap();
    namespace(&admin, "team-drain", &[MANAGED]).await;
    eventually("a ProjectSettings reconcile in flight", || async {
        op.metric(
            "controller_runtime_active_workers",
            &[("controller", "projectsettings")],
        ) >= 1
    })
    .await;

    op.shutdown.cancel();
    let (_, at_signal) = renewal(&admin).await.unwrap();
    let lease = jiff::SignedDuration::from_secs(3);
    eventually(
        "renewals past one lease duration after the signal",
        || async {
            renewal(&admin).await.is_some_and(|(holder, renewed)| {
                holder.starts_with("op-a") && renewed > at_signal + lease
            })
        },
    )
    .await;
    assert!(!op.task.is_finished(), "the reconcile is still in flight");
    assert!(
        accepts().await,
        "the webhook closed while the reconciles drain"
    );

    cluster.clear_faults();
    tokio::time::timeout(support::DEADLINE, op.task)
        .await
        .expect("the operator stops once the reconcile has finished")
        .unwrap()
        .unwrap();
    assert_eq!(
        holder(&admin).await,
        None,
        "the Lease is released at the end"
    );
    eventually("the webhook to close", || async { !accepts().await }).await;
    let _ = std::fs::remove_dir_all(certs_dir);
}
