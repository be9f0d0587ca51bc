//! Malformed, oversized and invalid requests: each answers a proper `metav1.Status` and
//! leaves stored state unchanged. Also the HTTP endpoints for accounting and faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use devcluster::DevCluster;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

async fn send(dc: &DevCluster, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(body)
        .unwrap();
    let client = dc.client();
    let resp = client.send(req.map(Into::into)).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util_collect(resp).await;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, v)
}

async fn http_body_util_collect(resp: http::Response<kube::client::Body>) -> Vec<u8> {
    resp.into_body().collect_bytes().await.unwrap().to_vec()
}

fn assert_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

#[tokio::test]
async fn malformed_unknown_and_oversized() {
    let dc = DevCluster::start().await.unwrap();
    let before = dc.cluster().resource_version();
    let cms = "/api/v1/namespaces/default/configmaps";

    let (code, v) = send(&dc, "POST", cms, "application/json", b"{not json".to_vec()).await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest");

    let (code, v) = send(
        &dc,
        "POST",
        cms,
        "application/yaml",
        b"a: [unclosed".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest");

    let (code, v) = send(
        &dc,
        "GET",
        "/apis/nothing.example.com/v1/things",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");

    let big = json!({"metadata": {"name": "big"}, "data": {"x": "y".repeat(4 * 1024 * 1024)}});
    let (code, v) = send(
        &dc,
        "POST",
        cms,
        "application/json",
        serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert_eq!(code, 413);
    assert_status(&v, 413, "RequestEntityTooLarge");

    let (code, v) = send(
        &dc,
        "GET",
        &format!("{cms}?labelSelector=a%20in%20b"),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest");

    let (code, v) = send(
        &dc,
        "PATCH",
        &format!("{cms}/missing"),
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");

    let (code, v) = send(
        &dc,
        "POST",
        cms,
        "application/json",
        br#"{"metadata":{"name":"Bad_Name"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422);
    assert_status(&v, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name", "{v}");

    let (code, v) = send(
        &dc,
        "POST",
        cms,
        "application/json",
        br#"{"metadata":{}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422);
    assert_status(&v, 422, "Invalid");

    let (code, v) = send(&dc, "POST", cms, "text/plain", b"hello".to_vec()).await;
    assert_eq!(code, 415, "{v}");
    assert_status(&v, 415, "UnsupportedMediaType");

    // Nothing above changed stored state.
    assert_eq!(dc.cluster().resource_version(), before);
    assert!(dc.cluster().list("", "configmaps").is_empty());
}

#[tokio::test]
async fn schema_violations_are_422_naming_the_field() {
    let dc = DevCluster::start().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(dc.client());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "sizes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Size", "plural": "sizes"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "minimum": 1}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let before = dc.cluster().resource_version();
    let path = "/apis/example.com/v1/namespaces/default/sizes";
    let body = json!({"apiVersion": "example.com/v1", "kind": "Size", "metadata": {"name": "s"}, "spec": {"replicas": 0}});
    let (code, v) = send(
        &dc,
        "POST",
        path,
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.replicas"),
        "{v}"
    );
    assert_eq!(dc.cluster().resource_version(), before);
}

#[tokio::test]
async fn accounting_and_fault_endpoints() {
    let dc = DevCluster::start().await.unwrap();
    let (code, _) = send(
        &dc,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, stats) = send(
        &dc,
        "GET",
        "/devcluster/stats",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(stats["requests"]["list configmaps"]["count"], 1, "{stats}");
    assert_eq!(stats["reads"], 1, "{stats}");

    let faults = json!({"errorRate": 1.0, "errorCodes": [500], "verbs": ["get"]});
    let (code, _) = send(
        &dc,
        "PUT",
        "/devcluster/faults",
        "application/json",
        serde_json::to_vec(&faults).unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(dc.cluster().faults().error_codes, vec![500]);
    let (code, v) = send(
        &dc,
        "GET",
        "/api/v1/namespaces/default",
        "application/json",
        Vec::new(),
    )
    .await;
    // (500 rather than 429: kube's client retries 429 for minutes by design.)
    assert_eq!(code, 500);
    assert_status(&v, 500, "InternalError");
    let (code, _) = send(
        &dc,
        "DELETE",
        "/devcluster/faults",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = send(
        &dc,
        "GET",
        "/api/v1/namespaces/default",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);

    let bad = json!({"errorRate": 2.0});
    let (code, v) = send(
        &dc,
        "PUT",
        "/devcluster/faults",
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("errorRate"),
        "{v}"
    );
}
