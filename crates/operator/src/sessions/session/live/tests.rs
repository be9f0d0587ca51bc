//! Tests of the live spec push: the plan from spec and status, the recorded status, and the
//! HTTP client against a small in-test server (success, error status, timeout, refused).

use super::*;
use agentic_api::sessions::{
    ActiveWorkflow, AgenticSessionSpec, AgenticSessionStatus, SessionRepo,
};
use tokio::net::TcpListener;

fn now() -> Timestamp {
    "2026-11-23T06:00:00Z".parse().unwrap()
}

fn session(repos: &[(&str, &str)], workflow: Option<(&str, &str, &str)>) -> AgenticSession {
    let mut s = AgenticSession::new(
        "s1",
        AgenticSessionSpec {
            repos: Some(
                repos
                    .iter()
                    .map(|(url, branch)| SessionRepo {
                        url: (*url).into(),
                        branch: Some((*branch).into()),
                        auto_push: None,
                    })
                    .collect(),
            ),
            active_workflow: workflow.map(|(u, b, p)| ActiveWorkflow {
                git_url: Some(u.into()),
                branch: Some(b.into()),
                path: Some(p.into()),
            }),
            ..AgenticSessionSpec::default()
        },
    );
    s.metadata.namespace = Some("team-a".into());
    s
}

fn with_applied(mut s: AgenticSession, applied: &AgenticSession) -> AgenticSession {
    let status = baseline_status(applied, now());
    s.status = Some(serde_json::from_value::<AgenticSessionStatus>(status).unwrap());
    s
}

#[test]
fn repo_names_come_from_the_url() {
    assert_eq!(repo_name("https://github.com/org/webapp.git"), "webapp");
    assert_eq!(repo_name("https://github.com/org/webapp/"), "webapp");
    assert_eq!(repo_name("git@github.com:org/api.git"), "api");
    assert_eq!(repo_name("git@host:solo.git"), "solo");
}

#[test]
fn a_runner_with_the_current_spec_needs_nothing() {
    let s = session(
        &[("https://g/o/a.git", "main")],
        Some(("https://g/o/w.git", "main", "wf")),
    );
    let applied = with_applied(s.clone(), &s);
    assert!(plan(&applied).is_empty());
    assert!(plan(&applied).calls().is_empty());
}

#[test]
fn changes_become_requests_removals_first() {
    let before = session(
        &[("https://g/o/a.git", "main"), ("https://g/o/b.git", "main")],
        None,
    );
    let after = with_applied(
        session(
            &[("https://g/o/a.git", "dev"), ("https://g/o/c.git", "main")],
            Some(("https://g/o/w.git", "main", "flows/x")),
        ),
        &before,
    );
    let p = plan(&after);
    assert_eq!(p.remove, vec!["b".to_owned()]);
    assert_eq!(
        p.add,
        vec![
            ("https://g/o/a.git".into(), "dev".into(), "a".into()),
            ("https://g/o/c.git".into(), "main".into(), "c".into()),
        ]
    );
    let calls = p.calls();
    assert_eq!(
        calls.iter().map(|c| c.path).collect::<Vec<_>>(),
        ["/repos/remove", "/repos/add", "/repos/add", "/workflow"]
    );
    assert_eq!(calls[0].body, json!({"name": "b"}));
    assert_eq!(
        calls[1].body,
        json!({"url": "https://g/o/a.git", "branch": "dev", "name": "a"})
    );
    assert_eq!(
        calls[3].body,
        json!({"gitUrl": "https://g/o/w.git", "branch": "main", "path": "flows/x"})
    );
}

#[test]
fn only_successful_requests_are_recorded() {
    let before = session(&[("https://g/o/a.git", "main")], None);
    let after = with_applied(
        session(
            &[("https://g/o/c.git", "main")],
            Some(("https://g/o/w.git", "main", "")),
        ),
        &before,
    );
    let p = plan(&after);
    // remove a: ok; add c: failed; workflow: ok.
    let status = applied_status(&after, &p, &[true, false, true], now());
    let repos = status["reconciledRepos"].as_array().unwrap();
    assert!(repos.is_empty(), "a removed, c not added: {status}");
    assert_eq!(status["reconciledWorkflow"]["gitUrl"], "https://g/o/w.git");
    assert_eq!(status["reconciledWorkflow"]["status"], "Active");
    // The failed add is planned again.
    let mut next = after.clone();
    next.status = Some(serde_json::from_value(status).unwrap());
    let again = plan(&next);
    assert_eq!(again.add.len(), 1);
    assert!(again.remove.is_empty() && again.workflow.is_none());
}

/// A one-shot HTTP server: answers every connection with `answer` (or never, when `None`)
/// and hands back the requests it read.
async fn server(
    answer: Option<&'static str>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                tx.send(String::from_utf8_lossy(&got).to_string()).unwrap();
                match answer {
                    Some(a) => {
                        stream.write_all(a.as_bytes()).await.unwrap();
                    }
                    None => tokio::time::sleep(Duration::from_hours(1)).await,
                }
            });
        }
    });
    (address, rx)
}

fn call() -> RunnerCall {
    RunnerCall {
        path: "/repos/add",
        body: json!({"url": "https://g/o/a.git", "branch": "main", "name": "a"}),
    }
}

#[tokio::test]
async fn post_sends_the_token_and_json_and_accepts_2xx() {
    let (address, mut requests) =
        server(Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    post(&address, "tok-1", &call(), Duration::from_secs(30))
        .await
        .unwrap();
    let request = requests.recv().await.unwrap();
    assert!(
        request.starts_with("POST /repos/add HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("X-Ambient-Session-Token: tok-1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("Content-Type: application/json\r\n"),
        "{request}"
    );
    let body = request.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), call().body);
}

#[tokio::test]
async fn post_reports_an_error_status_with_the_body() {
    let (address, _requests) = server(Some(
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 9\r\n\r\nbad token",
    ))
    .await;
    let err = post(&address, "wrong", &call(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad token"), "{err}");
}

#[tokio::test]
async fn post_gives_up_after_the_timeout() {
    let (address, _requests) = server(None).await;
    let err = post(&address, "t", &call(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("/repos/add"), "{err}");
}

#[tokio::test]
async fn post_reports_a_refused_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = post(&address, "t", &call(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Io { .. }), "{err}");
}

#[test]
fn the_runner_is_addressed_through_its_service() {
    assert_eq!(
        runner_address(&session(&[], None)),
        "session-s1.team-a.svc.cluster.local:8001"
    );
}
