//! Authentication, RBAC authorization, `TokenRequest` and HTTPS serving of the dev cluster,
//! exercised through kube-rs and kubectl the way an operator running as a `ServiceAccount`
//! would meet them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::time::Duration;

use base64::Engine as _;
use devcluster::DevCluster;
use devcluster::auth::token::{Claims, ISSUER, Signer};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn rbac_cluster() -> DevCluster {
    DevCluster::builder().rbac(true).start().await.unwrap()
}

async fn namespace(dc: &DevCluster, name: &str) {
    let api: Api<Namespace> = Api::all(dc.client());
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}})),
    )
    .await
    .unwrap();
}

async fn service_account(dc: &DevCluster, ns: &str, name: &str) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(dc.client(), ns);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}})),
    )
    .await
    .unwrap()
}

async fn role(dc: &DevCluster, ns: &str, name: &str, rules: Value) {
    let api: Api<Role> = Api::namespaced(dc.client(), ns);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "rules": rules})),
    )
    .await
    .unwrap();
}

async fn cluster_role(dc: &DevCluster, name: &str, rules: Value) {
    let api: Api<ClusterRole> = Api::all(dc.client());
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "rules": rules})),
    )
    .await
    .unwrap();
}

async fn role_binding(dc: &DevCluster, ns: &str, name: &str, role_ref: Value, subjects: Value) {
    let api: Api<RoleBinding> = Api::namespaced(dc.client(), ns);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "roleRef": role_ref, "subjects": subjects})),
    )
    .await
    .unwrap();
}

async fn cluster_role_binding(dc: &DevCluster, name: &str, role: &str, subjects: Value) {
    let api: Api<ClusterRoleBinding> = Api::all(dc.client());
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})),
    )
    .await
    .unwrap();
}

fn sa_subject(ns: &str, name: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}])
}

fn role_ref(kind: &str, name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name})
}

fn cm(name: &str) -> ConfigMap {
    obj(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
}

/// The API status of a failed call.
fn status<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    let (code, reason, message) = status(r);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{message}");
    message
}

/// A client that sends no credentials at all.
fn anonymous_client(dc: &DevCluster) -> kube::Client {
    let mut config = dc.config().clone();
    config.auth_info = kube::config::AuthInfo::default();
    kube::Client::try_from(config).unwrap()
}

fn client_with_token(dc: &DevCluster, token: &str) -> kube::Client {
    let mut config = dc.config().clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..kube::config::AuthInfo::default()
    };
    kube::Client::try_from(config).unwrap()
}

async fn raw_get(client: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

const SA: &str = "system:serviceaccount:team:worker";

#[tokio::test]
async fn role_grants_exactly_its_rules_in_its_namespace() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    role(
        &dc,
        "team",
        "cm-editor",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "cm-editor",
        role_ref("Role", "cm-editor"),
        sa_subject("team", "worker"),
    )
    .await;
    let client = dc.service_account_client("team", "worker").await.unwrap();

    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    team.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert_eq!(team.get("a").await.unwrap().data.unwrap()["k"], "v");
    assert_eq!(
        team.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // Verbs the Role does not name.
    let m = forbidden(team.delete("a", &DeleteParams::default()).await);
    assert_eq!(
        m,
        format!(
            "configmaps \"a\" is forbidden: User \"{SA}\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"team\""
        )
    );
    let m = forbidden(
        team.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await,
    );
    assert!(m.contains("cannot patch resource \"configmaps\""), "{m}");

    // Another namespace.
    let default: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let m = forbidden(default.get("x").await);
    assert_eq!(
        m,
        format!(
            "configmaps \"x\" is forbidden: User \"{SA}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
    // Creates carry no name in the message.
    let m = forbidden(default.create(&PostParams::default(), &cm("b")).await);
    assert_eq!(
        m,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
    // All namespaces is the cluster scope.
    let all: Api<ConfigMap> = Api::all(client.clone());
    let m = forbidden(all.list(&ListParams::default()).await);
    assert_eq!(
        m,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope"
        )
    );
    // Another resource in the same namespace, and another API group.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let m = forbidden(secrets.list(&ListParams::default()).await);
    assert_eq!(
        m,
        format!(
            "secrets is forbidden: User \"{SA}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team\""
        )
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "team");
    let m = forbidden(deployments.get("d").await);
    assert_eq!(
        m,
        format!(
            "deployments.apps \"d\" is forbidden: User \"{SA}\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"team\""
        )
    );

    // The admin token is never restricted.
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    admin.delete("a", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn cluster_role_via_cluster_role_binding_and_via_role_binding() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    namespace(&dc, "other").await;
    service_account(&dc, "team", "worker").await;
    cluster_role(
        &dc,
        "ns-reader",
        json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;
    cluster_role(
        &dc,
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
    )
    .await;
    cluster_role_binding(&dc, "ns-reader", "ns-reader", sa_subject("team", "worker")).await;
    // A ClusterRole referenced by a RoleBinding grants its rules in that namespace only.
    role_binding(
        &dc,
        "other",
        "cm-reader",
        role_ref("ClusterRole", "cm-reader"),
        sa_subject("team", "worker"),
    )
    .await;
    let client = dc.service_account_client("team", "worker").await.unwrap();

    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"team".to_string()), "{names:?}");
    nss.get("other").await.unwrap();
    let m = forbidden(nss.delete("other", &DeleteParams::default()).await);
    assert_eq!(
        m,
        format!(
            "namespaces \"other\" is forbidden: User \"{SA}\" cannot delete resource \"namespaces\" in API group \"\" at the cluster scope"
        )
    );

    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    other.list(&ListParams::default()).await.unwrap();
    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    forbidden(team.list(&ListParams::default()).await);
    let all: Api<ConfigMap> = Api::all(client.clone());
    forbidden(all.list(&ListParams::default()).await);

    // Removing the binding takes the permission away at once.
    let crbs: Api<ClusterRoleBinding> = Api::all(dc.client());
    crbs.delete("ns-reader", &DeleteParams::default())
        .await
        .unwrap();
    let m = forbidden(nss.list(&ListParams::default()).await);
    assert_eq!(
        m,
        format!(
            "namespaces is forbidden: User \"{SA}\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
        )
    );
}

#[tokio::test]
async fn subresource_rules() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    service_account(&dc, "team", "runner").await;
    role(
        &dc,
        "team",
        "status-writer",
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"],
             "resourceNames": ["runner"]}
        ]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "status-writer",
        role_ref("Role", "status-writer"),
        sa_subject("team", "worker"),
    )
    .await;
    let admin_pods: Api<Pod> = Api::namespaced(dc.client(), "team");
    admin_pods
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})),
        )
        .await
        .unwrap();
    let client = dc.service_account_client("team", "worker").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"message": "from the worker"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        admin_pods
            .get("p")
            .await
            .unwrap()
            .status
            .unwrap()
            .message
            .as_deref(),
        Some("from the worker")
    );
    let m = forbidden(
        pods.patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await,
    );
    assert_eq!(
        m,
        format!(
            "pods \"p\" is forbidden: User \"{SA}\" cannot patch resource \"pods\" in API group \"\" in the namespace \"team\""
        )
    );

    // serviceaccounts/token, limited by resourceNames.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let req: TokenRequest = obj(json!({"spec": {"audiences": []}}));
    let tr = sas
        .create_token_request("runner", &PostParams::default(), &req)
        .await
        .unwrap();
    assert!(!tr.status.unwrap().token.is_empty());
    let m = forbidden(
        sas.create_token_request("worker", &PostParams::default(), &req)
            .await,
    );
    assert_eq!(
        m,
        format!(
            "serviceaccounts \"worker\" is forbidden: User \"{SA}\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"team\""
        )
    );
    // The pod itself can be read but not its status subresource.
    pods.get("p").await.unwrap();
    let m = forbidden(pods.get_status("p").await);
    assert!(m.contains("cannot get resource \"pods/status\""), "{m}");
}

#[tokio::test]
async fn resource_names_restrict_named_requests() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    for n in ["allowed", "other"] {
        admin.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    role(
        &dc,
        "team",
        "one-cm",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update", "list"],
                "resourceNames": ["allowed"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "one-cm",
        role_ref("Role", "one-cm"),
        sa_subject("team", "worker"),
    )
    .await;
    let client = dc.service_account_client("team", "worker").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "team");
    let mut got = api.get("allowed").await.unwrap();
    got.data = Some([("k".to_string(), "changed".to_string())].into());
    api.replace("allowed", &PostParams::default(), &got)
        .await
        .unwrap();
    let m = forbidden(api.get("other").await);
    assert_eq!(
        m,
        format!(
            "configmaps \"other\" is forbidden: User \"{SA}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team\""
        )
    );
    // A collection request names no object, so a resourceNames rule never covers it ...
    let m = forbidden(api.list(&ListParams::default()).await);
    assert_eq!(
        m,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\""
        )
    );
    // ... unless a field selector pins metadata.name, which makes it a named request.
    let names = api
        .list(&ListParams::default().fields("metadata.name=allowed"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect::<Vec<_>>();
    assert_eq!(names, vec!["allowed".to_string()]);
    let m = forbidden(
        api.list(&ListParams::default().fields("metadata.name=other"))
            .await,
    );
    assert_eq!(
        m,
        format!(
            "configmaps \"other\" is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\""
        )
    );
}

#[tokio::test]
async fn group_subjects() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    namespace(&dc, "elsewhere").await;
    service_account(&dc, "team", "a").await;
    service_account(&dc, "team", "b").await;
    service_account(&dc, "elsewhere", "c").await;
    role(
        &dc,
        "team",
        "reader",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "reader",
        role_ref("Role", "reader"),
        json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                "name": "system:serviceaccounts:team"}]),
    )
    .await;
    for name in ["a", "b"] {
        let client = dc.service_account_client("team", name).await.unwrap();
        let api: Api<Secret> = Api::namespaced(client, "team");
        api.list(&ListParams::default()).await.unwrap();
    }
    let client = dc.service_account_client("elsewhere", "c").await.unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), "team");
    let m = forbidden(api.list(&ListParams::default()).await);
    assert!(
        m.starts_with("secrets is forbidden: User \"system:serviceaccount:elsewhere:c\""),
        "{m}"
    );

    // A binding to every authenticated user reaches c too; a User subject names one user.
    role_binding(
        &dc,
        "team",
        "everyone",
        role_ref("Role", "reader"),
        json!([{"kind": "Group", "name": "system:authenticated"}]),
    )
    .await;
    api.list(&ListParams::default()).await.unwrap();
    let anon: Api<Secret> = Api::namespaced(anonymous_client(&dc), "team");
    let m = forbidden(anon.list(&ListParams::default()).await);
    assert_eq!(
        m,
        "secrets is forbidden: User \"system:anonymous\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team\""
    );
    role_binding(
        &dc,
        "team",
        "anonymous",
        role_ref("Role", "reader"),
        json!([{"kind": "User", "name": "system:anonymous"}]),
    )
    .await;
    anon.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn token_request_round_trip() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    let sa = service_account(&dc, "team", "worker").await;
    let api: Api<ServiceAccount> = Api::namespaced(dc.client(), "team");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![ISSUER.to_string()],
            expiration_seconds: Some(1800),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let before = jiff::Timestamp::now().as_second();
    let tr = api
        .create_token_request("worker", &PostParams::default(), &req)
        .await
        .unwrap();
    assert_eq!(tr.spec.expiration_seconds, Some(1800));
    assert_eq!(tr.metadata.name.as_deref(), Some("worker"));
    let st = tr.status.unwrap();
    let exp = st.expiration_timestamp.0.as_second();
    assert!(
        (before + 1800..=before + 1800 + 60).contains(&exp),
        "{exp} vs {before}"
    );

    // The claims are those of a real bound token.
    let parts: Vec<&str> = st.token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], SA);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["exp"], json!(exp));
    assert_eq!(claims["kubernetes.io"]["namespace"], "team");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "worker");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"].as_str(),
        sa.metadata.uid.as_deref()
    );

    // The token authenticates: discovery is open to every authenticated user.
    let client = client_with_token(&dc, &st.token);
    client.apiserver_version().await.unwrap();
    let groups = client.list_api_groups().await.unwrap();
    assert!(
        groups
            .groups
            .iter()
            .any(|g| g.name == "rbac.authorization.k8s.io")
    );
    client.list_core_api_versions().await.unwrap();
    let (code, body) = raw_get(&client, "/api/v1").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = raw_get(&client, "/devcluster/stats").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(&format!(
            "forbidden: User \\\"{SA}\\\" cannot get path \\\"/devcluster/stats\\\""
        )),
        "{body}"
    );
    // ... but no resources without a binding.
    let cms: Api<ConfigMap> = Api::namespaced(client, "team");
    forbidden(cms.list(&ListParams::default()).await);

    // Unknown ServiceAccount, too-short lifetime.
    let (code, reason, message) = status(
        api.create_token_request("ghost", &PostParams::default(), &req)
            .await,
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, "serviceaccounts \"ghost\" not found");
    let short = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(60),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let (code, reason, message) = status(
        api.create_token_request("worker", &PostParams::default(), &short)
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        "TokenRequest.authentication.k8s.io \"worker\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
    );

    // Without RBAC there is no token issuer.
    let plain = DevCluster::start().await.unwrap();
    assert!(matches!(
        plain.service_account_client("default", "default").await,
        Err(devcluster::auth::CredentialError::RbacDisabled)
    ));
}

async fn expect_unauthorized(client: &kube::Client) {
    let (code, reason, message) = status(client.apiserver_version().await);
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (code, _, _) = status(api.list(&ListParams::default()).await);
    assert_eq!(code, 401);
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    let sa = service_account(&dc, "team", "worker").await;
    let uid = sa.metadata.uid.unwrap();
    let auth = dc.auth().unwrap();
    let now = jiff::Timestamp::now().as_second();

    // Control: a token signed by this server with valid claims works.
    let good = auth.sign(&Claims::new(
        "team",
        "worker",
        &uid,
        vec![ISSUER.into()],
        now - 10,
        now + 600,
    ));
    client_with_token(&dc, &good)
        .apiserver_version()
        .await
        .unwrap();

    let forged = Signer::random().sign(&Claims::new(
        "team",
        "worker",
        &uid,
        vec![ISSUER.into()],
        now - 10,
        now + 600,
    ));
    expect_unauthorized(&client_with_token(&dc, &forged)).await;
    let expired = auth.sign(&Claims::new(
        "team",
        "worker",
        &uid,
        vec![ISSUER.into()],
        now - 7200,
        now - 3600,
    ));
    expect_unauthorized(&client_with_token(&dc, &expired)).await;
    let other_audience = auth.sign(&Claims::new(
        "team",
        "worker",
        &uid,
        vec!["vault".into()],
        now - 10,
        now + 600,
    ));
    expect_unauthorized(&client_with_token(&dc, &other_audience)).await;
    // Tampering with the claims breaks the signature.
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(now + 100_000);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    expect_unauthorized(&client_with_token(&dc, &tampered)).await;
    expect_unauthorized(&client_with_token(&dc, "not-a-token")).await;

    // Authentication and authorization come before the resource lookup, as on a real
    // server: an unknown resource is 401 for a bad token and 403 without permission.
    let (code, body) = raw_get(
        &client_with_token(&dc, &forged),
        "/apis/example.com/v1/widgets",
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = raw_get(
        &client_with_token(&dc, &good),
        "/apis/example.com/v1/widgets",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        format!(
            "widgets.example.com is forbidden: User \"{SA}\" cannot list resource \"widgets\" in API group \"example.com\" at the cluster scope"
        )
    );
    let (code, _) = raw_get(&dc.client(), "/apis/example.com/v1/widgets").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn deleting_the_service_account_revokes_its_tokens() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    let client = dc.service_account_client("team", "worker").await.unwrap();
    client.apiserver_version().await.unwrap();
    let api: Api<ServiceAccount> = Api::namespaced(dc.client(), "team");
    api.delete("worker", &DeleteParams::default())
        .await
        .unwrap();
    expect_unauthorized(&client).await;
    // A new ServiceAccount of the same name has a new uid: old tokens stay dead.
    service_account(&dc, "team", "worker").await;
    expect_unauthorized(&client).await;
    let fresh = dc.service_account_client("team", "worker").await.unwrap();
    fresh.apiserver_version().await.unwrap();
}

#[tokio::test]
async fn anonymous_requests_see_only_public_paths() {
    let dc = rbac_cluster().await;
    let anon = anonymous_client(&dc);
    anon.apiserver_version().await.unwrap();
    let (code, _) = raw_get(&anon, "/healthz").await;
    assert_eq!(code, 200);
    let (code, reason, message) = status(anon.list_api_groups().await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );
    let (code, body) = raw_get(&anon, "/openapi/v2").await;
    assert_eq!(code, 403, "{body}");
    let cms: Api<ConfigMap> = Api::namespaced(anon, "default");
    let m = forbidden(cms.get("x").await);
    assert_eq!(
        m,
        "configmaps \"x\" is forbidden: User \"system:anonymous\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    // The admin kubeconfig keeps full access.
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    admin
        .create(&PostParams::default(), &cm("x"))
        .await
        .unwrap();
    let (code, _) = raw_get(&dc.client(), "/devcluster/stats").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn watcher_without_watch_permission_gets_403() {
    use kube::runtime::watcher;
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    role(
        &dc,
        "team",
        "list-only",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "list-only",
        role_ref("Role", "list-only"),
        sa_subject("team", "worker"),
    )
    .await;
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    admin
        .create(&PostParams::default(), &cm("seen"))
        .await
        .unwrap();
    let client = dc.service_account_client("team", "worker").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "team");
    // The initial list succeeds; the watch that follows is refused, and the watcher
    // reports that as an error item (and would retry it forever under a backoff).
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut listed = Vec::new();
    let err = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::InitApply(o))) => listed.push(o.metadata.name.unwrap()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return e,
                None => panic!("watcher ended"),
            }
        }
    })
    .await
    .expect("no watch error within 30 s");
    assert_eq!(listed, vec!["seen".to_string()]);
    match err {
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                format!(
                    "configmaps is forbidden: User \"{SA}\" cannot watch resource \"configmaps\" in API group \"\" in the namespace \"team\""
                )
            );
        }
        other => panic!("unexpected watcher error {other:?}"),
    }
}

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn https_with_generated_ca_for_kube_and_kubectl() {
    let dc = DevCluster::builder()
        .tls(true)
        .rbac(true)
        .start()
        .await
        .unwrap();
    assert!(dc.url().starts_with("https://127.0.0.1:"));
    let kubeconfig = std::fs::read_to_string(dc.kubeconfig_path()).unwrap();
    assert!(kubeconfig.contains("certificate-authority-data: "));
    assert!(kubeconfig.contains(&format!("server: {}", dc.url())));
    assert!(
        dc.ca_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    // kube over HTTPS, admin and ServiceAccount.
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    role(
        &dc,
        "team",
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "cm-reader",
        role_ref("Role", "cm-reader"),
        sa_subject("team", "worker"),
    )
    .await;
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    admin
        .create(&PostParams::default(), &cm("tls"))
        .await
        .unwrap();
    let sa = dc.service_account_client("team", "worker").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sa.clone(), "team");
    assert_eq!(api.get("tls").await.unwrap().data.unwrap()["k"], "v");

    // A watch streams over TLS too.
    let mut stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
    admin
        .create(&PostParams::default(), &cm("later"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.next().await {
                Some(Ok(
                    kube::runtime::watcher::Event::Apply(o)
                    | kube::runtime::watcher::Event::InitApply(o),
                )) if o.metadata.name.as_deref() == Some("later") => return,
                Some(_) => {}
                None => panic!("watcher ended"),
            }
        }
    })
    .await
    .expect("watch event over TLS within 30 s");

    // A client that does not trust the CA is refused.
    let mut untrusted = dc.config().clone();
    untrusted.root_cert = None;
    let client = kube::Client::try_from(untrusted).unwrap();
    assert!(client.apiserver_version().await.is_err());

    // kubectl with the generated kubeconfig (admin) and a ServiceAccount kubeconfig.
    let out = kubectl(
        dc.kubeconfig_path(),
        &["get", "configmaps", "-n", "team", "-o", "name"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configmap/tls"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("devcluster-auth-{}", std::process::id()));
    let sa_kubeconfig = dir.join("worker.kubeconfig");
    dc.write_service_account_kubeconfig("team", "worker", &sa_kubeconfig)
        .await
        .unwrap();
    let out = kubectl(
        &sa_kubeconfig,
        &["get", "configmap", "tls", "-o", "jsonpath={.data.k}"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v");
    let out = kubectl(&sa_kubeconfig, &["get", "secrets", "-n", "default"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "secrets is forbidden: User \"{SA}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rbac_writes_cannot_escalate() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    role(
        &dc,
        "team",
        "delegator",
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
             "verbs": ["create", "update", "get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
        ]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "delegator",
        role_ref("Role", "delegator"),
        sa_subject("team", "worker"),
    )
    .await;
    cluster_role(
        &dc,
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
    )
    .await;
    cluster_role(
        &dc,
        "secret-admin",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]),
    )
    .await;
    let client = dc.service_account_client("team", "worker").await.unwrap();
    let roles: Api<Role> = Api::namespaced(client.clone(), "team");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "team");

    // Granting what the writer holds is fine.
    roles
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "cm-get"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})),
        )
        .await
        .unwrap();
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "cm-reader"},
                "roleRef": role_ref("ClusterRole", "cm-reader"),
                "subjects": sa_subject("team", "other")})),
        )
        .await
        .unwrap();

    // More than the writer holds is refused with the real server's message.
    let groups =
        "[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]";
    let m = forbidden(
        roles
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "secrets"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"],
                               "verbs": ["get", "delete"]}]})),
            )
            .await,
    );
    assert_eq!(
        m,
        format!(
            "roles.rbac.authorization.k8s.io \"secrets\" is forbidden: user \"{SA}\" (groups={groups}) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"delete\"]}}\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}}"
        )
    );
    let m = forbidden(
        bindings
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "secret-admin"},
                    "roleRef": role_ref("ClusterRole", "secret-admin"),
                    "subjects": sa_subject("team", "other")})),
            )
            .await,
    );
    assert_eq!(
        m,
        format!(
            "rolebindings.rbac.authorization.k8s.io \"secret-admin\" is forbidden: user \"{SA}\" (groups={groups}) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"*\"]}}"
        )
    );
    // Widening an existing role is checked as well.
    let mut widened = roles.get("cm-get").await.unwrap();
    widened.rules = Some(vec![obj(
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch"]}),
    )]);
    let m = forbidden(
        roles
            .replace("cm-get", &PostParams::default(), &widened)
            .await,
    );
    assert!(
        m.ends_with("{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"watch\"]}"),
        "{m}"
    );
    // A binding to a role that does not exist.
    let (code, _, message) = status(
        bindings
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "ghost"},
                    "roleRef": role_ref("Role", "ghost"),
                    "subjects": sa_subject("team", "other")})),
            )
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        (404, "roles.rbac.authorization.k8s.io \"ghost\" not found")
    );

    // `bind` on the named role and `escalate` on roles lift the checks.
    role(
        &dc,
        "team",
        "binder",
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
             "verbs": ["bind"], "resourceNames": ["secret-admin"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
             "verbs": ["escalate"]}
        ]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "binder",
        role_ref("Role", "binder"),
        sa_subject("team", "worker"),
    )
    .await;
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "secret-admin"},
                "roleRef": role_ref("ClusterRole", "secret-admin"),
                "subjects": sa_subject("team", "other")})),
        )
        .await
        .unwrap();
    roles
        .replace("cm-get", &PostParams::default(), &widened)
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_shows_denials_and_unused_rules() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    let manifest = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: operator
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
"#;
    let role: Value = serde_yaml::from_str(manifest).unwrap();
    let rules = devcluster::auth::rbac::rules_of(&role);
    let api: Api<ClusterRole> = Api::all(dc.client());
    api.create(&PostParams::default(), &obj(role))
        .await
        .unwrap();
    cluster_role_binding(&dc, "operator", "operator", sa_subject("team", "worker")).await;
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    admin
        .create(&PostParams::default(), &cm("c"))
        .await
        .unwrap();

    let client = dc.service_account_client("team", "worker").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    cms.get("c").await.unwrap();
    // Keep a watcher running so that its list and watch requests are made.
    let mut stream = kube::runtime::watcher(cms, kube::runtime::watcher::Config::default()).boxed();
    let drain = tokio::spawn(async move { while stream.next().await.is_some() {} });
    let audit = dc.auth().unwrap().audit();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !audit
        .decisions()
        .iter()
        .any(|d| d.user == SA && d.verb == "watch" && d.allowed)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.abort();

    assert!(audit.denied(SA).is_empty(), "{:?}", audit.denied(SA));
    assert_eq!(
        audit.unused(SA, &rules),
        vec![
            "{APIGroups:[\"\"], Resources:[\"pods/status\"], Verbs:[\"patch\"]}".to_string(),
            "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}".to_string(),
        ]
    );
    // A request outside the role shows up as a denial.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, "team");
    forbidden(leases.get("leader").await);
    let denied = audit.denied(SA);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        (
            denied[0].verb.as_str(),
            denied[0].group.as_str(),
            denied[0].resource.as_str(),
            denied[0].namespace.as_str(),
            denied[0].name.as_str()
        ),
        ("get", "coordination.k8s.io", "leases", "team", "leader")
    );
    // The admin is never recorded.
    assert!(audit.decisions().iter().all(|d| d.user != "system:admin"));
}

#[tokio::test]
async fn owner_references_need_delete_and_owner_finalizers() {
    let dc = rbac_cluster().await;
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    let admin: Api<ConfigMap> = Api::namespaced(dc.client(), "team");
    let owner = admin
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let owner_uid = owner.metadata.uid.unwrap();
    role(
        &dc,
        "team",
        "writer",
        json!([{"apiGroups": [""], "resources": ["configmaps"],
                "verbs": ["get", "create", "update"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "writer",
        role_ref("Role", "writer"),
        sa_subject("team", "worker"),
    )
    .await;
    let client = dc.service_account_client("team", "worker").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "team");
    let child = |name: &str, block: bool, kind: &str| -> ConfigMap {
        obj(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": kind, "name": "owner", "uid": owner_uid,
            "controller": true, "blockOwnerDeletion": block}]},
            "data": {"k": "v"}}))
    };

    // An owner reference that does not block deletion needs nothing more on create.
    api.create(&PostParams::default(), &child("loose", false, "ConfigMap"))
        .await
        .unwrap();
    // blockOwnerDeletion needs update on the owner's finalizers.
    let m = forbidden(
        api.create(
            &PostParams::default(),
            &child("blocking", true, "ConfigMap"),
        )
        .await,
    );
    assert_eq!(
        m,
        "configmaps \"blocking\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>"
    );
    let m = forbidden(
        api.create(&PostParams::default(), &child("unknown", true, "Gadget"))
            .await,
    );
    assert_eq!(
        m,
        "configmaps \"unknown\" is forbidden: cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion v1 Kind Gadget: no matches for kind \"Gadget\" in version \"v1\""
    );
    // Changing the owner references of an existing object needs delete on it.
    let plain = api
        .create(&PostParams::default(), &cm("plain"))
        .await
        .unwrap();
    let mut adopted = child("plain", false, "ConfigMap");
    adopted.metadata.resource_version = plain.metadata.resource_version.clone();
    let m = forbidden(api.replace("plain", &PostParams::default(), &adopted).await);
    assert_eq!(
        m,
        "configmaps \"plain\" is forbidden: cannot set an ownerRef on a resource you can't delete: , <nil>"
    );
    // Updates that leave the owner references alone are not affected.
    let mut loose = api.get("loose").await.unwrap();
    loose.data = Some([("k".to_string(), "w".to_string())].into());
    api.replace("loose", &PostParams::default(), &loose)
        .await
        .unwrap();
    let denied = dc.auth().unwrap().audit().denied(SA);
    assert!(
        denied
            .iter()
            .any(|d| d.verb == "update" && d.subresource == "finalizers" && d.name == "owner"),
        "{denied:?}"
    );

    // With those permissions both go through.
    role(
        &dc,
        "team",
        "owner-finalizers",
        json!([
            {"apiGroups": [""], "resources": ["configmaps/finalizers"], "verbs": ["update"],
             "resourceNames": ["owner"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]}
        ]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "owner-finalizers",
        role_ref("Role", "owner-finalizers"),
        sa_subject("team", "worker"),
    )
    .await;
    api.create(
        &PostParams::default(),
        &child("blocking", true, "ConfigMap"),
    )
    .await
    .unwrap();
    api.replace("plain", &PostParams::default(), &adopted)
        .await
        .unwrap();
    // The check can be switched off.
    dc.auth().unwrap().set_owner_references_enforced(false);
    let other = |name: &str| -> ConfigMap {
        obj(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "loose", "uid": "x",
            "blockOwnerDeletion": true}]}}))
    };
    api.create(&PostParams::default(), &other("free"))
        .await
        .unwrap();
}

#[tokio::test]
async fn serve_binary_with_tls_has_rbac_on() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = std::env::temp_dir().join(format!("devcluster-serve-auth-{}", std::process::id()));
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .arg("serve")
        .arg("--tls")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_mins(1), lines.next_line())
        .await
        .expect("server started within 60 s")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("ready "), "{ready}");

    // The admin kubeconfig works over HTTPS.
    let out = kubectl(&kubeconfig, &["create", "serviceaccount", "bot"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
    // kubectl create token goes through TokenRequest (protobuf body).
    let out = kubectl(
        &kubeconfig,
        &["create", "token", "bot", "--duration", "15m"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The token has no permissions beyond discovery.
    let out = kubectl(&kubeconfig, &["--token", &token, "get", "pods"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "pods is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{stderr}"
    );
    let out = kubectl(&kubeconfig, &["--token", &token, "api-versions"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&kubeconfig, &["--token", "forged", "get", "pods"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().await.unwrap();

    // On plain HTTP kubectl sends no credentials, so those requests run as the admin;
    // tokens are still checked.
    let plain_kubeconfig = dir.join("plain-kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&plain_kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_mins(1), lines.next_line())
        .await
        .expect("server started within 60 s")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("ready "), "{ready}");
    let out = kubectl(&plain_kubeconfig, &["create", "serviceaccount", "bot"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(
        &plain_kubeconfig,
        &["--as", "system:serviceaccount:default:bot", "get", "pods"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "pods is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"pods\""
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kc = kube::config::Kubeconfig::read_from(&plain_kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info.token = Some("forged".to_string().into());
    let client = kube::Client::try_from(config).unwrap();
    let (code, _, _) = status(client.apiserver_version().await);
    assert_eq!(code, 401);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn impersonation() {
    // HTTPS: kubectl sends no credentials to an http:// server.
    let dc = DevCluster::builder()
        .tls(true)
        .rbac(true)
        .start()
        .await
        .unwrap();
    namespace(&dc, "team").await;
    service_account(&dc, "team", "worker").await;
    role(
        &dc,
        "team",
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
    )
    .await;
    role_binding(
        &dc,
        "team",
        "cm-reader",
        role_ref("Role", "cm-reader"),
        json!([
            {"kind": "ServiceAccount", "name": "worker", "namespace": "team"},
            {"kind": "Group", "name": "devs"}
        ]),
    )
    .await;
    let impersonating = |user: &str, groups: Option<Vec<String>>| {
        let mut config = dc.config().clone();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = groups;
        kube::Client::try_from(config).unwrap()
    };
    // The admin may act as anyone; the request is then judged as that user.
    let as_sa: Api<ConfigMap> = Api::namespaced(impersonating(SA, None), "team");
    as_sa.list(&ListParams::default()).await.unwrap();
    let m = forbidden(as_sa.create(&PostParams::default(), &cm("x")).await);
    assert!(m.contains(&format!("User \"{SA}\" cannot create")), "{m}");
    let as_alice: Api<ConfigMap> = Api::namespaced(impersonating("alice", None), "team");
    let m = forbidden(as_alice.list(&ListParams::default()).await);
    assert_eq!(
        m,
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
    let as_dev: Api<ConfigMap> = Api::namespaced(
        impersonating("alice", Some(vec!["devs".to_string()])),
        "team",
    );
    as_dev.list(&ListParams::default()).await.unwrap();

    // kubectl --as works the same way.
    let out = kubectl(
        dc.kubeconfig_path(),
        &["--as", SA, "get", "configmaps", "-n", "team"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(
        dc.kubeconfig_path(),
        &["--as", "alice", "get", "secrets", "-n", "team"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("User \"alice\" cannot list resource \"secrets\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Others need the impersonate verb.
    let token = dc
        .service_account_token("team", "worker", Duration::from_hours(1))
        .await
        .unwrap();
    let mut config = dc.config().clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        impersonate: Some("boss".into()),
        ..kube::config::AuthInfo::default()
    };
    let client = kube::Client::try_from(config).unwrap();
    let (code, reason, message) = status(client.apiserver_version().await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        format!(
            "users \"boss\" is forbidden: User \"{SA}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        )
    );
    cluster_role(
        &dc,
        "impersonator",
        json!([{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"],
                "resourceNames": ["boss"]}]),
    )
    .await;
    cluster_role_binding(
        &dc,
        "impersonator",
        "impersonator",
        sa_subject("team", "worker"),
    )
    .await;
    client.apiserver_version().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "team");
    let m = forbidden(api.list(&ListParams::default()).await);
    assert!(m.contains("User \"boss\" cannot list"), "{m}");
}
