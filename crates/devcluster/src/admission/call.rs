//! HTTP(S) POSTs of `AdmissionReview`s to webhook endpoints, trusting the configuration's
//! `caBundle`, over connections kept open between calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest webhook response body read.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// Where and how to reach one webhook.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Whether to speak TLS.
    pub https: bool,
    /// `host:port` to connect to (after service mapping).
    pub connect: String,
    /// TLS server name (the URL host, or `<service>.<namespace>.svc`).
    pub server_name: String,
    /// `Host` header value.
    pub authority: String,
    /// Path and query of the request, including `?timeout=Ns`.
    pub path_and_query: String,
    /// PEM certificates trusted for the server certificate.
    pub ca_bundle: Option<Vec<u8>>,
}

impl Endpoint {
    /// The URL as kube-apiserver prints it in errors.
    pub fn display_url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority,
            self.path_and_query
        )
    }
}

/// Aborts the connection task when the connection is dropped (closed, timed out, not kept).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config(ca_bundle: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_bundle {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("caBundle: cannot read a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("caBundle: unusable certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Idle connections to webhook endpoints, reused the way kube-apiserver's HTTP transport keeps
/// them alive, so a busy webhook costs a TCP (and TLS) handshake once, not on every call.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Conn>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// What makes two endpoints share connections: scheme, address, TLS name and trusted CAs.
type PoolKey = (bool, String, String, Option<Vec<u8>>);

/// Most idle connections kept per endpoint (more are closed after their call).
const MAX_IDLE_PER_ENDPOINT: usize = 16;

/// One HTTP/1 connection: the request handle and the task driving the connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
}

fn key(ep: &Endpoint) -> PoolKey {
    (
        ep.https,
        ep.connect.clone(),
        ep.server_name.clone(),
        ep.ca_bundle.clone(),
    )
}

impl Pool {
    /// Posts `body` and returns the HTTP status and response body. The error text follows
    /// Go's `net/http` wording where kube-apiserver users would recognise it.
    pub(crate) async fn post(
        &self,
        ep: &Endpoint,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        match tokio::time::timeout(timeout, self.exchange(ep, Bytes::from(body))).await {
            Ok(r) => r,
            Err(_) => Err("context deadline exceeded".into()),
        }
    }

    fn take(&self, key: &PoolKey) -> Option<Conn> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let conns = idle.get_mut(key)?;
        while let Some(conn) = conns.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, key: PoolKey, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let conns = idle.entry(key).or_default();
        if conns.len() < MAX_IDLE_PER_ENDPOINT {
            conns.push(conn);
        }
    }

    async fn exchange(&self, ep: &Endpoint, body: Bytes) -> Result<(u16, Bytes), String> {
        let key = key(ep);
        // A kept connection may have been closed by the server while idle: then the call is
        // made again on a new one, as Go's transport does for a reused connection.
        if let Some(mut conn) = self.take(&key)
            && conn.sender.ready().await.is_ok()
            && let Ok(answer) = send(&mut conn.sender, ep, body.clone()).await
        {
            self.give_back(key, conn);
            return Ok(answer);
        }
        let mut conn = connect(ep).await?;
        let answer = send(&mut conn.sender, ep, body).await?;
        self.give_back(key, conn);
        Ok(answer)
    }
}

async fn connect(ep: &Endpoint) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect(&ep.connect)
        .await
        .map_err(|e| format!("dial tcp {}: connect: {e}", ep.connect))?;
    if !ep.https {
        return handshake(tcp).await;
    }
    let cfg = tls_config(ep.ca_bundle.as_deref())?;
    let name = ServerName::try_from(ep.server_name.clone())
        .map_err(|e| format!("invalid TLS server name {:?}: {e}", ep.server_name))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
    handshake(tls).await
}

async fn handshake<IO>(io: IO) -> Result<Conn, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok(Conn {
        sender,
        _driver: driver,
    })
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    ep: &Endpoint,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let req = http::Request::post(ep.path_and_query.as_str())
        .header(http::header::HOST, ep.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "devcluster-admission")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}
