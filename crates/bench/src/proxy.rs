//! A counting HTTP/1.1 pass-through proxy: a client pointed at it reaches the upstream API
//! server unchanged (watches stream through), and every resource request is counted under
//! the same `"<verb> <resource>"` key the dev cluster's accounting uses ([`account_key`]).
//!
//! `bench operator` runs the simulators of the evaluations and labs families as a separate
//! `devcluster simulate` process behind this proxy, so that their requests are counted
//! exactly instead of being recognised by key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::Method;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::BenchError;

/// Requests counted so far, by accounting key.
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    counts: Counts,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The verb the dev cluster records for a request on a resource URL: `name` and `sub` are
/// whether the URL names an object and a subresource; `watch` is the `watch` query flag.
fn verb_of(method: &Method, name: bool, sub: bool, watch: bool) -> Option<&'static str> {
    Some(match (method.as_str(), name) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if sub => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

/// The dev cluster's accounting key (`"<verb> <plural>[.<group>][/<subresource>]"`) of a
/// request, or `None` for requests it does not account (discovery, health, malformed URLs).
pub fn account_key(method: &Method, path: &str, query: Option<&str>) -> Option<String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _, rest @ ..] if !rest.is_empty() => (*g, rest),
        _ => return None,
    };
    let (plural, tail) = match rest {
        ["namespaces", _, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (*plural, tail)
        }
        [plural, tail @ ..] => (*plural, tail),
        [] => return None,
    };
    if tail.len() > 2 {
        return None;
    }
    let watch = query
        .unwrap_or_default()
        .split('&')
        .any(|kv| matches!(kv.split_once('='), Some(("watch", "true" | "1"))));
    let verb = verb_of(method, !tail.is_empty(), tail.len() == 2, watch)?;
    let mut resource = plural.to_string();
    if !group.is_empty() {
        resource.push('.');
        resource.push_str(group);
    }
    if let Some(sub) = tail.get(1) {
        resource.push('/');
        resource.push_str(sub);
    }
    Some(format!("{verb} {resource}"))
}

fn proxy_err(detail: impl std::fmt::Display) -> BenchError {
    BenchError::Config {
        field: "proxy".into(),
        detail: detail.to_string(),
    }
}

impl CountingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, one upstream
    /// connection per client connection.
    pub async fn start(upstream: SocketAddr) -> Result<Self, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| proxy_err(format!("listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| proxy_err(format!("listen: {e}")))?;
        let counts = Counts::default();
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counts = c.clone();
                tokio::spawn(async move {
                    let _ = serve(tcp, upstream, counts).await;
                });
            }
        });
        Ok(Self { addr, counts, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts since the last call, by accounting key.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Serves one client connection over one upstream connection.
async fn serve(
    tcp: tokio::net::TcpStream,
    upstream: SocketAddr,
    counts: Counts,
) -> Result<(), BenchError> {
    let _ = tcp.set_nodelay(true);
    let up = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| proxy_err(format!("connect {upstream}: {e}")))?;
    let _ = up.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(up))
        .await
        .map_err(|e| proxy_err(format!("handshake {upstream}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let sender = sender.clone();
        let counts = counts.clone();
        async move {
            let key = account_key(req.method(), req.uri().path(), req.uri().query());
            let mut s = sender.lock().await;
            s.ready().await?;
            let response = s.send_request(req).await?;
            // Counted once the server has answered, so a count read after a snapshot of the
            // server's accounting never includes a request the snapshot has not seen.
            if let Some(key) = key {
                *counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key)
                    .or_default() += 1;
            }
            Ok::<_, hyper::Error>(response)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), svc)
        .await
        .map_err(|e| proxy_err(format!("serve: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &Method, uri: &str) -> Option<String> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        account_key(method, path, query)
    }

    #[test]
    fn keys_match_the_dev_cluster_accounting() {
        assert_eq!(
            key(&Method::GET, "/api/v1/namespaces/b/pods").as_deref(),
            Some("list pods")
        );
        assert_eq!(
            key(&Method::GET, "/api/v1/pods?watch=true&resourceVersion=4").as_deref(),
            Some("watch pods")
        );
        assert_eq!(
            key(&Method::GET, "/api/v1/pods?watch=1").as_deref(),
            Some("watch pods")
        );
        assert_eq!(
            key(&Method::GET, "/api/v1/pods?watch=false").as_deref(),
            Some("list pods")
        );
        assert_eq!(
            key(&Method::POST, "/api/v1/namespaces/b/secrets").as_deref(),
            Some("create secrets")
        );
        assert_eq!(
            key(
                &Method::PATCH,
                "/apis/illm.io/v1alpha1/namespaces/b/vclusters/e-app/status"
            )
            .as_deref(),
            Some("patch vclusters.illm.io/status")
        );
        assert_eq!(
            key(
                &Method::PATCH,
                "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/x"
            )
            .as_deref(),
            Some("patch applications.argoproj.io")
        );
        assert_eq!(
            key(&Method::GET, "/apis/illm.io/v1alpha1/vclusters").as_deref(),
            Some("list vclusters.illm.io")
        );
        assert_eq!(
            key(&Method::POST, "/api/v1/namespaces/b/pods/p/binding").as_deref(),
            Some("create pods/binding")
        );
        assert_eq!(
            key(&Method::PUT, "/api/v1/namespaces/b/status").as_deref(),
            Some("update namespaces/status")
        );
        assert_eq!(
            key(&Method::DELETE, "/api/v1/namespaces/b/configmaps").as_deref(),
            Some("deletecollection configmaps")
        );
    }

    #[test]
    fn unaccounted_requests_have_no_key() {
        // Discovery, health, a POST to a named object, and too deep a path.
        for (m, uri) in [
            (Method::GET, "/api"),
            (Method::GET, "/api/v1"),
            (Method::GET, "/apis/argoproj.io/v1alpha1"),
            (Method::GET, "/readyz"),
            (Method::POST, "/api/v1/namespaces/b/pods/p"),
            (Method::GET, "/api/v1/namespaces/b/pods/p/log/x"),
        ] {
            assert_eq!(key(&m, uri), None, "{m} {uri}");
        }
    }

    #[tokio::test]
    async fn forwards_and_counts() {
        use http_body_util::Full;
        // An upstream that echoes the method and path.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                            let text = format!("{} {}", req.method(), req.uri().path());
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                bytes::Bytes::from(text),
                            )))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let proxy = CountingProxy::start(upstream).await.unwrap();
        let mut conn = crate::http::Conn::connect(proxy.addr()).await.unwrap();
        for _ in 0..2 {
            let (status, body) = conn
                .call(Method::GET, "/api/v1/namespaces/b/pods", None)
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert_eq!(&body[..], b"GET /api/v1/namespaces/b/pods");
        }
        let (_, body) = conn
            .call(
                Method::POST,
                "/api/v1/namespaces/b/secrets",
                Some(bytes::Bytes::from_static(b"{}")),
            )
            .await
            .unwrap();
        assert_eq!(&body[..], b"POST /api/v1/namespaces/b/secrets");
        conn.call(Method::GET, "/readyz", None).await.unwrap();
        let counts = proxy.take();
        assert_eq!(
            counts,
            BTreeMap::from([("create secrets".into(), 1), ("list pods".into(), 2)])
        );
        assert!(proxy.take().is_empty(), "take resets the counts");
        server.abort();
    }
}
