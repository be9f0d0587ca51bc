//! The HTTPS admission server: rustls with the ring provider, the certificate read from a
//! directory (a mounted TLS Secret: `tls.crt`, `tls.key`) and re-read when it changes, and
//! one `/validate-…` path per kind.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::post};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use kube::{
    Api, Client,
    api::DynamicObject,
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::rules::{self, AgentLookup, Verdict};
use crate::evaluations::{
    agent::{AGENT_GROUP, AGENT_VERSION, agent_resource},
    gateway::ai_gateway_resource,
};
use crate::labs::config::LabsConfig;

/// Path validating evaluation `Experiment`s (`testbench.agentic-layer.ai/v1alpha1`).
pub const PATH_EVALUATION_EXPERIMENT: &str =
    "/validate-testbench-agentic-layer-ai-v1alpha1-experiment";
/// Path validating `AgenticSession`s (`vteam.ambient-code/v1alpha1`).
pub const PATH_AGENTIC_SESSION: &str = "/validate-vteam-ambient-code-v1alpha1-agenticsession";
/// Path validating labs `Experiment`s (`experiments.illm.io/v1alpha1`).
pub const PATH_LAB_EXPERIMENT: &str = "/validate-experiments-illm-io-v1alpha1-experiment";
/// How often the certificate directory is checked for changes.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Why the webhook server could not start or load its certificate.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {address} for the admission webhook (--webhook-bind-address): {source}"
    )]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file could not be read.
    #[error("cannot read {path} (--webhook-cert-dir must hold tls.crt and tls.key): {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no usable PEM certificate or key.
    #[error("{path} holds no usable PEM {what}")]
    Pem {
        /// The file.
        path: String,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the certificate and key.
    #[error("the webhook certificate in {dir} cannot be used: {source}")]
    Tls {
        /// The directory.
        dir: String,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },
}

/// Serves the certificate found in a directory, re-reading it when its files change.
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    loaded: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl CertStore {
    /// A store for `dir` with nothing loaded yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            current: RwLock::new(None),
            loaded: Mutex::new(None),
        }
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn read(path: &Path) -> Result<Vec<u8>, WebhookError> {
        std::fs::read(path).map_err(|source| WebhookError::Read {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads `tls.crt` and `tls.key`; returns `Ok(true)` when a new certificate was loaded,
    /// `Ok(false)` when the files did not change. On error the previous certificate stays.
    pub fn reload(&self) -> Result<bool, WebhookError> {
        let cert_path = self.dir.join("tls.crt");
        let key_path = self.dir.join("tls.key");
        let cert_pem = Self::read(&cert_path)?;
        let key_pem = Self::read(&key_path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded
            .as_ref()
            .is_some_and(|(c, k)| *c == cert_pem && *k == key_pem)
        {
            return Ok(false);
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(WebhookError::Pem {
                path: cert_path.display().to_string(),
                what: "certificate",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| WebhookError::Pem {
            path: key_path.display().to_string(),
            what: "private key",
        })?;
        let certified =
            CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(
                |source| WebhookError::Tls {
                    dir: self.dir.display().to_string(),
                    source,
                },
            )?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(certified));
        *loaded = Some((cert_pem, key_pem));
        Ok(true)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the handlers share.
#[derive(Clone)]
struct WebhookState {
    client: Client,
    /// The labs configuration for the labs checks that need it (`None`: left to the
    /// controller).
    labs: Option<Arc<LabsConfig>>,
}

/// The admission routes, one `POST` path per kind; `labs` enables the labs checks that need
/// the configuration.
pub fn router(client: Client, labs: Option<Arc<LabsConfig>>) -> Router {
    Router::new()
        .route(PATH_EVALUATION_EXPERIMENT, post(evaluation_experiment))
        .route(PATH_AGENTIC_SESSION, post(agentic_session))
        .route(PATH_LAB_EXPERIMENT, post(lab_experiment))
        .with_state(WebhookState { client, labs })
}

type Review = Json<AdmissionReview<DynamicObject>>;

fn respond(request: &AdmissionRequest<DynamicObject>, verdict: Verdict) -> Review {
    let mut response = AdmissionResponse::from(request);
    if !verdict.allowed() {
        response = response.deny(verdict.message());
        response.result.code = 422;
        response.result.reason = "Invalid".into();
    }
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    Json(response.into_review())
}

/// The request, or the answer to give when there is nothing to check: a malformed review,
/// a delete, an object being deleted, or an update that leaves the spec and the parts at the
/// JSON pointers `checked` as they were (so that finalizers can always be removed from an
/// object that no longer passes).
fn to_check(
    review: AdmissionReview<DynamicObject>,
    checked: &[&str],
) -> Result<(AdmissionRequest<DynamicObject>, Value, Option<Value>), Box<Review>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            return Err(Box::new(Json(
                AdmissionResponse::invalid(error).into_review(),
            )));
        }
    };
    let Some(object) = request.object.as_ref() else {
        return Err(Box::new(respond(&request, Verdict::default())));
    };
    if object.metadata.deletion_timestamp.is_some() {
        return Err(Box::new(respond(&request, Verdict::default())));
    }
    let object = serde_json::to_value(object).unwrap_or(Value::Null);
    let old = request
        .old_object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).ok());
    if request.operation == Operation::Update
        && std::iter::once("/spec")
            .chain(checked.iter().copied())
            .all(|at| old.as_ref().and_then(|o| o.pointer(at)) == object.pointer(at))
    {
        return Err(Box::new(respond(&request, Verdict::default())));
    }
    Ok((request, object, old))
}

/// Looks up the Agent at `namespace/name`.
pub async fn lookup_agent(client: &Client, namespace: &str, name: &str) -> AgentLookup {
    lookup_object(client, &agent_resource(), namespace, name).await
}

/// Whether object `namespace/name` of the agent runtime's kind `ar` exists, telling a missing
/// object from a missing CRD.
async fn lookup_object(
    client: &Client,
    ar: &kube::api::ApiResource,
    namespace: &str,
    name: &str,
) -> AgentLookup {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, ar);
    match api.get_opt(name).await {
        Ok(Some(_)) => AgentLookup::Found,
        Ok(None) => {
            match client
                .list_api_group_resources(&format!("{AGENT_GROUP}/{AGENT_VERSION}"))
                .await
            {
                Ok(list) => {
                    if list.resources.iter().any(|r| r.name == ar.plural) {
                        AgentLookup::NotFound
                    } else {
                        AgentLookup::CrdNotInstalled
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => AgentLookup::CrdNotInstalled,
                Err(error) => AgentLookup::Failed(error.to_string()),
            }
        }
        Err(error) => AgentLookup::Failed(error.to_string()),
    }
}

async fn evaluation_experiment(State(state): State<WebhookState>, Json(review): Review) -> Review {
    let (request, object, old) = match to_check(review, &[]) {
        Ok(parts) => parts,
        Err(answer) => return *answer,
    };
    let target = rules::agent_ref(&object);
    let changed = old.as_ref().map(rules::agent_ref) != Some(target.clone());
    let agent = match target {
        Some((namespace, name)) if changed => lookup_agent(&state.client, &namespace, &name).await,
        _ => AgentLookup::Skipped,
    };
    let mut verdict = rules::evaluation_experiment(&object, &agent);
    let gateway = rules::gateway_ref(&object);
    if gateway != old.as_ref().and_then(rules::gateway_ref)
        && let Some((namespace, name)) = gateway
    {
        let found = lookup_object(&state.client, &ai_gateway_resource(), &namespace, &name).await;
        verdict.warnings.extend(rules::gateway_warning(
            &format!("{namespace}/{name}"),
            &found,
        ));
    }
    respond(&request, verdict)
}

async fn agentic_session(Json(review): Review) -> Review {
    match to_check(review, &[rules::DESIRED_PHASE_POINTER]) {
        Ok((request, object, old)) => {
            respond(&request, rules::agentic_session(&object, old.as_ref()))
        }
        Err(answer) => *answer,
    }
}

async fn lab_experiment(State(state): State<WebhookState>, Json(review): Review) -> Review {
    match to_check(review, &[]) {
        Ok((request, object, old)) => respond(
            &request,
            rules::lab_experiment(&object, old.as_ref(), state.labs.as_deref()),
        ),
        Err(answer) => *answer,
    }
}

/// Binds `address` and serves the webhook over HTTPS until `shutdown`; returns the bound
/// address. The certificate is loaded from `cert_dir` now and re-read every
/// [`CERT_POLL_INTERVAL`]; while none is loadable, handshakes fail and a warning is logged.
/// `labs` enables the labs checks that need the configuration.
pub async fn serve(
    address: SocketAddr,
    cert_dir: &Path,
    client: Client,
    labs: Option<Arc<LabsConfig>>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, WebhookError> {
    let certs = Arc::new(CertStore::new(cert_dir));
    if let Err(error) = certs.reload() {
        tracing::warn!(%error, "the admission webhook has no certificate yet; retrying");
    }
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|source| WebhookError::Tls {
        dir: cert_dir.display().to_string(),
        source,
    })?
    .with_no_client_auth()
    .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| WebhookError::Bind { address, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| WebhookError::Bind { address, source })?;

    let reload_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::select! {
                () = reload_stop.cancelled() => break,
                () = tokio::time::sleep(CERT_POLL_INTERVAL) => {}
            }
            match certs.reload() {
                Ok(true) => {
                    warned = false;
                    tracing::info!("loaded the admission webhook certificate");
                }
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!(%error, "cannot load the admission webhook certificate; keeping the previous one");
                }
                Ok(false) | Err(_) => {}
            }
        }
    });

    let app = router(client, labs);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%error, "webhook TLS handshake failed");
                        return;
                    }
                };
                let service = TowerToHyperService::new(app);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%error, "webhook connection ended with an error");
                }
            });
        }
    });
    tracing::info!(%local, "serving the admission webhook");
    Ok(local)
}
