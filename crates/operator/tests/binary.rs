//! The `agentic-operator` binary: help text, start-up errors, the `crd` subcommand, and a full
//! start / probe / SIGTERM cycle against a minimal fake API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use axum::{Json, Router, routing::get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_agentic-operator");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "agentic-operator-test-{tag}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The binary with an empty environment except HOME (an empty directory) and `vars`.
fn operator(home: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("HOME", home);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn error_lines(output: &Output) -> Vec<String> {
    text(&output.stderr)
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: test\n  user:\n    token: abc\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n"
    );
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn help_documents_every_flag_and_environment_variable() {
    let output = Command::new(BIN).arg("run").arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = text(&output.stdout);
    for needle in [
        "--max-concurrent-reconciles",
        "--metrics-bind-address",
        "--health-probe-bind-address",
        "--leader-elect",
        "--leader-election-id",
        "--leader-election-namespace",
        "--lease-duration",
        "--renew-deadline",
        "--retry-period",
        "--legacy-watch",
        "--controllers",
        "--reconcile-timeout",
        "MAX_CONCURRENT_RECONCILES",
        "NAMESPACE",
        "BACKEND_NAMESPACE",
        "DEV_MODE",
        "AMBIENT_CODE_RUNNER_IMAGE",
        "quay.io/ambient_code/vteam_claude_runner:latest",
        "[default: :8080]",
        "[default: :8081]",
        "[default: 10]",
        "[default: agentic-operator-leader]",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
    }
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let top = text(&top.stdout);
    assert!(top.contains("crd") && top.contains("run"), "{top}");
}

#[test]
fn missing_kubeconfig_is_one_clear_error() {
    let home = temp_dir("nokube");
    let output = operator(&home, &[("DEV_MODE", "true")])
        .args(["--metrics-bind-address=0", "--health-probe-bind-address=0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "stderr:\n{}", text(&output.stderr));
    assert!(
        errors[0].contains("no Kubernetes configuration found"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("KUBECONFIG"), "{}", errors[0]);
    assert!(!text(&output.stderr).contains("panicked"));
}

#[test]
fn unreachable_api_server_is_one_clear_json_error() {
    let home = temp_dir("unreachable");
    let kubeconfig = write_kubeconfig(&home, "https://127.0.0.1:1");
    let output = operator(&home, &[("KUBECONFIG", kubeconfig.to_str().unwrap())])
        .args(["--metrics-bind-address=0", "--health-probe-bind-address=0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "stderr:\n{}", text(&output.stderr));
    let line: serde_json::Value = serde_json::from_str(&errors[0]).unwrap();
    assert_eq!(line["level"], "ERROR");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("kubeconfig"), "{message}");
}

#[test]
fn invalid_flag_values_are_rejected_with_the_flag_name() {
    let home = temp_dir("badflag");
    let output = operator(&home, &[("DEV_MODE", "1")])
        .arg("--metrics-bind-address=8080")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--metrics-bind-address"),
        "{}",
        text(&output.stderr)
    );

    let output = operator(&home, &[])
        .arg("--lease-duration=soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--lease-duration"));
}

#[test]
fn crd_subcommand_prints_or_writes_every_crd() {
    let output = Command::new(BIN).arg("crd").output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let yaml = text(&output.stdout);
    let documents = yaml.matches("---\n").count();
    assert_eq!(
        documents,
        yaml.matches("kind: CustomResourceDefinition").count(),
        "{yaml}"
    );

    let root = temp_dir("crds");
    let dir = root.join("bases");
    let output = Command::new(BIN)
        .args(["crd", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), documents);
    for file in files {
        let content = std::fs::read_to_string(file.unwrap().path()).unwrap();
        assert!(content.contains("kind: CustomResourceDefinition"));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

#[tokio::test]
async fn serves_probes_and_metrics_then_stops_cleanly_on_sigterm() {
    // A fake API server that answers the start-up check and has no API groups.
    let api = Router::new().route(
        "/version",
        get(|| async {
            Json(
                serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "",
                "compiler": "", "platform": ""}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, api).await });

    let home = temp_dir("sigterm");
    let kubeconfig = write_kubeconfig(&home, &format!("http://127.0.0.1:{api_port}"));
    let (metrics_port, probe_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("HOME", &*home)
        .env("KUBECONFIG", &kubeconfig)
        .env("DEV_MODE", "true")
        .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
        .arg(format!(
            "--health-probe-bind-address=127.0.0.1:{probe_port}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(probe_port, "/readyz").await {
            assert!(body.starts_with("ok"), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = http_get(probe_port, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, metrics) = http_get(metrics_port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE process_cpu_seconds counter"),
        "{metrics}"
    );

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the operator did not exit after SIGTERM")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
}
