//! HTTPS serving: a CA and a serving certificate generated at start-up, and an axum
//! listener that completes TLS handshakes off the accept loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why TLS material could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Key or certificate generation failed.
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// `CA` or `serving certificate`.
        what: &'static str,
        /// What rcgen reported.
        source: rcgen::Error,
    },
    /// rustls refused the generated certificate or protocol settings.
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A generated CA, a serving certificate it signed, and the acceptor using them.
#[derive(Clone)]
pub struct ServerTls {
    /// The CA certificate in `PEM` form (what clients trust).
    pub ca_pem: String,
    /// The serving certificate in `PEM` form.
    pub cert_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Installs rustls' ring provider as the process default if none is installed yet, so
/// clients built from a kubeconfig (kube, hyper-rustls) find one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ServerTls {
    /// Generates a CA and a serving certificate for `localhost`, `127.0.0.1`, `::1`, the
    /// in-cluster service names, and `listen_ip` when it is a specific address.
    pub fn generate(listen_ip: IpAddr) -> Result<Self, TlsError> {
        let ca_err = |source| TlsError::Generate { what: "CA", source };
        let ca_key = KeyPair::generate().map_err(ca_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "devcluster-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(ca_err)?;

        let srv_err = |source| TlsError::Generate {
            what: "serving certificate",
            source,
        };
        let mut names: Vec<String> = [
            "localhost",
            "127.0.0.1",
            "::1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        if !listen_ip.is_unspecified() && !listen_ip.is_loopback() {
            names.push(listen_ip.to_string());
        }
        let key = KeyPair::generate().map_err(srv_err)?;
        let mut params = CertificateParams::new(names).map_err(srv_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "devcluster");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).map_err(srv_err)?;

        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// An axum listener serving TLS: a background task accepts TCP connections and finishes
/// each handshake in its own task, so a slow client never holds up others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Wraps a bound TCP listener.
    pub fn new(listener: TcpListener, tls: &ServerTls) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let acceptor = tls.acceptor.clone();
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, addr, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl ServerTls {
    /// [`Self::generate`] when `on`, after installing the crypto provider clients need.
    pub fn when(on: bool, listen_ip: IpAddr) -> Result<Option<Self>, TlsError> {
        if !on {
            return Ok(None);
        }
        install_crypto_provider();
        Self::generate(listen_ip).map(Some)
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `stop` is cancelled.
pub fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<&ServerTls>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    Ok(match tls {
        Some(t) => {
            let listener = TlsListener::new(listener, t)?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            })
        }
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        }),
    })
}
