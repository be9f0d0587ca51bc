//! One HTTP(S) POST of an `AdmissionReview` to a webhook endpoint, trusting the
//! configuration's `caBundle`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
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

/// Aborts the connection task when the exchange ends or times out.
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

/// Posts `body` and returns the HTTP status and response body. The error text follows Go's
/// `net/http` wording where kube-apiserver users would recognise it.
pub(crate) async fn post(
    ep: &Endpoint,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    match tokio::time::timeout(timeout, exchange(ep, body)).await {
        Ok(r) => r,
        Err(_) => Err("context deadline exceeded".into()),
    }
}

async fn exchange(ep: &Endpoint, body: Vec<u8>) -> Result<(u16, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(&ep.connect)
        .await
        .map_err(|e| format!("dial tcp {}: connect: {e}", ep.connect))?;
    if !ep.https {
        return send(tcp, ep, body).await;
    }
    let cfg = tls_config(ep.ca_bundle.as_deref())?;
    let name = ServerName::try_from(ep.server_name.clone())
        .map_err(|e| format!("invalid TLS server name {:?}: {e}", ep.server_name))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
    send(tls, ep, body).await
}

async fn send<IO>(io: IO, ep: &Endpoint, body: Vec<u8>) -> Result<(u16, Bytes), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = http::Request::post(ep.path_and_query.as_str())
        .header(http::header::HOST, ep.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "devcluster-admission")
        .body(Full::new(Bytes::from(body)))
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
