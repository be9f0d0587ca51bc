//! kubectl (the real binary) against the in-memory API server: apply (client-side and
//! server-side), get (-o yaml, -w, -l), describe, patch, label, annotate, create, delete,
//! wait and api-resources.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(dc: &DevCluster) -> Self {
        let dir = dc.kubeconfig_path().parent().unwrap().join("work");
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            kubeconfig: dc.kubeconfig_path().to_path_buf(),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KUBECTL);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .env("HOME", &self.dir)
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_mins(2), self.command(args).output())
            .await
            .expect("kubectl finished")
            .expect("kubectl ran");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl and requires success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p: &Path = &self.dir.join(name);
        std::fs::write(p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: demo}
data:
  a: "1"
  keep: "yes"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: demo}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        env:
        - {name: A, value: "1"}
        - {name: DROP, value: "x"}
"#;

const APP_V2: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: demo}
data:
  keep: "yes"
  b: "2"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: demo}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.26
        env:
        - {name: A, value: "2"}
        - {name: B, value: "3"}
"#;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget, shortNames: [gd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Parts, type: string, jsonPath: ".spec.parts[*].name"}
    - {name: Ready, type: string, jsonPath: ".status.conditions[?(@.type==\"Ready\")].status"}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              parts:
                type: array
                items: {type: object, properties: {name: {type: string}}}
          status:
            type: object
            properties:
              conditions:
                type: array
                items: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

const GADGET: &str = r"
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
  labels: {tier: front}
spec:
  size: 3
  parts: [{name: a}, {name: b}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_client_side_then_server_side() {
    let dc = DevCluster::start().await.unwrap();
    let k = Kubectl::new(&dc);
    let f1 = k.file("app.yaml", APP);
    let out = k.ok(&["apply", "-f", &f1]).await;
    assert!(out.contains("configmap/app-config created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = k.ok(&["apply", "-f", &f1]).await;
    assert!(out.contains("unchanged"), "{out}");

    let f2 = k.file("app2.yaml", APP_V2);
    let out = k.ok(&["apply", "-f", &f2]).await;
    assert!(out.contains("configured"), "{out}");
    let cms: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let data = cms.get("app-config").await.unwrap().data.unwrap();
    assert_eq!(data.get("b").map(String::as_str), Some("2"));
    assert!(
        !data.contains_key("a"),
        "client-side apply removes dropped keys: {data:?}"
    );
    let deploys: Api<Deployment> = Api::namespaced(dc.client(), "default");
    let d = deploys.get("web").await.unwrap();
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:1.26"));
    let env: Vec<(String, String)> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(
        env,
        vec![("A".into(), "2".into()), ("B".into(), "3".into())]
    );

    // Server-side apply by kubectl, then a conflicting manager.
    let out = k.ok(&["apply", "--server-side", "-f", &f2]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let cm = cms.get("app-config").await.unwrap();
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "kubectl"), "{managers:?}");
    let f3 = k.file(
        "cm3.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  keep: \"no\"\n",
    );
    let (ok, _, err) = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            &f3,
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("conflict"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        &f3,
    ])
    .await;
    assert_eq!(
        cms.get("app-config").await.unwrap().data.unwrap()["keep"],
        "no"
    );

    let yaml = k.ok(&["get", "deploy", "web", "-o", "yaml"]).await;
    assert!(yaml.contains("image: nginx:1.26"), "{yaml}");
    let listed = k
        .ok(&["get", "deploy,cm", "-l", "app=demo", "-o", "name"])
        .await;
    assert!(listed.contains("deployment.apps/web"), "{listed}");
    assert!(listed.contains("configmap/app-config"), "{listed}");
    let described = k.ok(&["describe", "deployment", "web"]).await;
    assert!(described.contains("nginx:1.26"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_with_kubectl() {
    let dc = DevCluster::start().await.unwrap();
    let k = Kubectl::new(&dc);
    let crd = k.file("crd.yaml", CRD);
    k.ok(&["apply", "-f", &crd]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=60s",
    ])
    .await;
    let res = k.ok(&["api-resources", "--api-group=example.com"]).await;
    assert!(
        res.contains("gadgets") && res.contains("gd") && res.contains("Gadget"),
        "{res}"
    );

    let g = k.file("gadget.yaml", GADGET);
    k.ok(&["apply", "-f", &g]).await;
    let table = k.ok(&["get", "gadgets"]).await;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("SIZE") && header.contains("PARTS") && header.contains("READY"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("g1") && row.contains('3') && row.contains("a,b"),
        "{table}"
    );

    let selected = k
        .ok(&["get", "gd", "-l", "tier in (front,back)", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "gadget.example.com/g1");
    let none = k.ok(&["get", "gd", "-l", "!tier", "-o", "name"]).await;
    assert!(none.trim().is_empty(), "{none}");

    k.ok(&[
        "patch",
        "gadget",
        "g1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "gadget",
        "g1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/parts/-","value":{"name":"c"}}]"#,
    ])
    .await;
    k.ok(&["label", "gadget", "g1", "color=blue"]).await;
    k.ok(&["annotate", "gadget", "g1", "note=hello"]).await;
    let yaml = k.ok(&["get", "gadget", "g1", "-o", "yaml"]).await;
    assert!(yaml.contains("size: 5"), "{yaml}");
    assert!(yaml.contains("name: c"), "{yaml}");
    assert!(yaml.contains("color: blue"), "{yaml}");
    assert!(yaml.contains("note: hello"), "{yaml}");

    let (ok, _, _) = k
        .run(&["wait", "--for=condition=Ready", "gadget/g1", "--timeout=1s"])
        .await;
    assert!(!ok, "the condition is not there yet");
    k.ok(&[
        "patch",
        "gadget",
        "g1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "gadget/g1",
        "--timeout=60s",
    ])
    .await;
    let table = k.ok(&["get", "gadgets"]).await;
    assert!(
        table.lines().nth(1).unwrap_or_default().contains("True"),
        "{table}"
    );
    let described = k.ok(&["describe", "gadget", "g1"]).await;
    assert!(
        described.contains("Size:") && described.contains("Ready"),
        "{described}"
    );

    k.ok(&["delete", "-f", &g]).await;
    let (ok, _, err) = k.run(&["get", "gadget", "g1"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    k.ok(&["delete", "crd", "gadgets.example.com"]).await;
    let (ok, _, _) = k.run(&["get", "gadgets"]).await;
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_changes() {
    let dc = DevCluster::start().await.unwrap();
    let k = Kubectl::new(&dc);
    let mut child = k
        .command(&["get", "configmaps", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    let mut n = 0;
    while !seen.contains("configmap/watched-") && tokio::time::Instant::now() < deadline {
        n += 1;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("watched-{n}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buf)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..len]));
        }
    }
    child.kill().await.unwrap();
    assert!(seen.contains("configmap/watched-"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_generators_and_cascading_delete() {
    let dc = DevCluster::start().await.unwrap();
    let k = Kubectl::new(&dc);
    k.ok(&["create", "namespace", "team"]).await;
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team",
        "--from-literal=x=y",
    ])
    .await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team",
        "--from-literal=p=q",
    ])
    .await;
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"])
        .await;
    let f = k.file("app.yaml", APP);
    k.ok(&["create", "-n", "team", "-f", &f]).await;
    let (ok, _, err) = k.run(&["create", "-n", "team", "-f", &f]).await;
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
    let all = k
        .ok(&["get", "cm,secret,sa", "-n", "team", "-o", "name"])
        .await;
    for want in [
        "configmap/settings",
        "secret/creds",
        "serviceaccount/robot",
        "configmap/app-config",
    ] {
        assert!(all.contains(want), "{want} missing from {all}");
    }
    let secret = k
        .ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.p}",
        ])
        .await;
    assert_eq!(secret, "cQ==");

    k.ok(&[
        "delete",
        "deployment",
        "web",
        "-n",
        "team",
        "--cascade=foreground",
    ])
    .await;
    k.ok(&["delete", "namespace", "team", "--timeout=60s"])
        .await;
    let (ok, _, err) = k.run(&["get", "namespace", "team"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    assert!(
        dc.cluster()
            .get("", "configmaps", "team", "settings")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_show_in_get_and_describe() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let dc = DevCluster::start().await.unwrap();
    let k = Kubectl::new(&dc);
    let cms: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "watched"}})).unwrap();
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let recorder = Recorder::new(
        dc.client(),
        Reporter {
            controller: "demo-controller".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Configured".into(),
                note: Some("all settings applied".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &cm.object_ref(&()),
        )
        .await
        .unwrap();
    let listed = k.ok(&["get", "events"]).await;
    assert!(
        listed.contains("Configured") && listed.contains("configmap/watched"),
        "{listed}"
    );
    let described = k.ok(&["describe", "configmap", "watched"]).await;
    assert!(
        described.contains("Configured") && described.contains("all settings applied"),
        "{described}"
    );
}
