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
        "--kube-api-qps",
        "--kube-api-burst",
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

    // A burst with no rate to refill it.
    let output = operator(&home, &[("DEV_MODE", "1")])
        .arg("--kube-api-burst=30")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--kube-api-burst=30 needs --kube-api-qps"),
        "{}",
        text(&output.stderr)
    );
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

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address in the `local=` field of the `serving {purpose}` log line, once logged.
fn served_address(stderr: &str, purpose: &str) -> Option<std::net::SocketAddr> {
    let message = format!("serving {purpose}");
    strip_ansi(stderr)
        .lines()
        .filter(|l| l.contains(&message) && !l.contains(&format!("{message} and")))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|field| field.strip_prefix("local="))
                .and_then(|a| a.parse().ok())
        })
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
    // Port 0 lets the kernel pick free ports at bind time (a port picked beforehand could be
    // taken by another process in between); the operator logs where it listens. Metrics and
    // probes get different addresses so that they are served by two listeners. The webhook
    // server is off: its default port and certificate directory are fixed, shared paths.
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("HOME", &*home)
        .env("KUBECONFIG", &kubeconfig)
        .env("DEV_MODE", "true")
        .arg("--metrics-bind-address=127.0.0.1:0")
        .arg("--health-probe-bind-address=0.0.0.0:0")
        .arg("--webhook-bind-address=0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = [0_u8; 4096];
        loop {
            match pipe.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    });
    let logged = || stderr.lock().unwrap().clone();

    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    let (metrics_port, probe_port) = loop {
        let log = logged();
        if let (Some(m), Some(p)) = (
            served_address(&log, "metrics"),
            served_address(&log, "health probes"),
        ) {
            break (m.port(), p.port());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator never said where it serves metrics and probes:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        if let Some((200, body)) = http_get(probe_port, "/readyz").await {
            assert!(body.starts_with("ok"), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never became ready:\n{}",
            logged()
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
    let status = tokio::time::timeout(Duration::from_mins(1), child.wait())
        .await
        .expect("the operator did not exit after SIGTERM")
        .unwrap();
    tokio::time::timeout(Duration::from_mins(1), reader)
        .await
        .expect("stderr is closed once the operator exits")
        .unwrap();
    let stderr = logged();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
}
