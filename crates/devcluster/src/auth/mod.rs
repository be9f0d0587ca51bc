//! Authentication (admin bearer token, `ServiceAccount` `JWTs`, anonymous), RBAC
//! authorization over the cluster's own `Role`/`ClusterRole`/`RoleBinding`/`ClusterRoleBinding`
//! objects, the `serviceaccounts/token` `TokenRequest` subresource, and HTTPS serving.
//!
//! Turned on with [`crate::DevClusterBuilder::rbac`] and [`crate::DevClusterBuilder::tls`];
//! [`crate::DevCluster::service_account_client`] runs code as a `ServiceAccount`.

// The hook traits this module implements return `ApiError` by value.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod escalation;
pub mod owners;
pub mod rbac;
pub mod tls;
pub mod token;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::hooks::{
    AdmissionHook, AdmissionRequest, Authenticator, Authorizer, Hooks, RequestInfo,
    SubresourceHandler, SubresourceRequest, UserInfo,
};
use crate::state::State;
use crate::store::Store;
use crate::{DevCluster, DevClusterBuilder};

use rbac::{Attributes, Index, RBAC_GROUP, forbidden};
use token::{Claims, ISSUER, Signer, TokenError, now_seconds};

/// The group every request with the admin token belongs to; RBAC never restricts it.
pub const MASTERS_GROUP: &str = "system:masters";

/// Default lifetime of a requested token.
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

const IMPERSONATE_USER: http::HeaderName = http::HeaderName::from_static("impersonate-user");
const IMPERSONATE_GROUP: http::HeaderName = http::HeaderName::from_static("impersonate-group");

/// Lifetime of the tokens behind [`DevCluster::service_account_client`] (a day).
pub const SERVICE_ACCOUNT_TOKEN_SECONDS: u64 = 24 * 3600;

/// Shortest lifetime a `TokenRequest` may ask for (10 minutes, as on a real server).
pub const MIN_TOKEN_SECONDS: i64 = 600;

/// The unauthenticated user.
pub fn anonymous() -> UserInfo {
    UserInfo {
        username: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// The user a `ServiceAccount` authenticates as.
pub fn service_account_user(namespace: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        username: format!("system:serviceaccount:{namespace}:{name}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

/// The 401 a real API server answers for a bad credential.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The resolved RBAC index and what it was built from.
#[derive(Debug)]
struct Cached {
    global_rv: u64,
    fingerprint: [(usize, u64); 4],
    index: Arc<Index>,
}

/// The authenticator, RBAC authorizer and `TokenRequest` handler of one server. Install
/// it into [`Hooks`] with [`Auth::install`]; it reads the cluster once bound to it.
pub struct Auth {
    signer: Signer,
    admin_token: String,
    state: OnceLock<Weak<State>>,
    cache: RwLock<Option<Cached>>,
    audit: audit::Audit,
    owner_references: AtomicBool,
    credentialless_admin: AtomicBool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

impl Auth {
    /// A new instance with a random signing key; `admin_token` authenticates as
    /// [`UserInfo::admin`].
    pub fn new(admin_token: &str) -> Self {
        Self {
            signer: Signer::random(),
            admin_token: admin_token.to_string(),
            state: OnceLock::new(),
            cache: RwLock::new(None),
            audit: audit::Audit::default(),
            owner_references: AtomicBool::new(true),
            credentialless_admin: AtomicBool::new(false),
        }
    }

    /// Creates an instance and registers it as authenticator, authorizer, admission hook
    /// (owner-reference permissions, privilege-escalation checks on RBAC writes) and
    /// `serviceaccounts/token` handler.
    pub fn install(hooks: &mut Hooks, admin_token: &str) -> Arc<Self> {
        let auth = Arc::new(Self::new(admin_token));
        hooks.authenticator = Some(auth.clone());
        hooks.authorizer = Some(auth.clone());
        hooks.admission.push(auth.clone());
        hooks.subresources.push((
            (String::new(), "serviceaccounts".into(), "token".into()),
            auth.clone(),
        ));
        auth
    }

    /// Connects the instance to the server state it authorizes against (held weakly).
    pub fn bind(&self, state: &Arc<State>) {
        let _ = self.state.set(Arc::downgrade(state));
    }

    fn state(&self) -> Option<Arc<State>> {
        self.state.get().and_then(Weak::upgrade)
    }

    /// Signs a token with arbitrary claims (tests use it for expired or mis-addressed
    /// tokens; clients get theirs through `TokenRequest`).
    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims)
    }

    /// Checks a `ServiceAccount` token: signature, issuer, audience, validity window, and that
    /// the `ServiceAccount` still exists with the uid in the token.
    pub fn verify_token(&self, token: &str) -> Result<UserInfo, TokenError> {
        let claims = self.signer.verify(token, now_seconds())?;
        let k = &claims.kubernetes;
        let live = self.state().and_then(|st| {
            let store = store_of(&st, "", "serviceaccounts")?;
            store.get(&k.namespace, &k.serviceaccount.name)
        });
        match live {
            Some(sa) if sa.uid() == k.serviceaccount.uid => Ok(service_account_user(
                &k.namespace,
                &k.serviceaccount.name,
                &k.serviceaccount.uid,
            )),
            _ => Err(TokenError::Revoked),
        }
    }

    /// The current RBAC index, rebuilt only when a `Role`, `ClusterRole`, `RoleBinding` or
    /// `ClusterRoleBinding` changed.
    pub fn index(&self) -> Arc<Index> {
        let Some(st) = self.state() else {
            return Arc::new(Index::default());
        };
        let rv = st.rv.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && c.global_rv == rv
        {
            return c.index.clone();
        }
        let objects: Vec<Vec<Arc<crate::store::Obj>>> = RBAC_RESOURCES
            .iter()
            .map(|r| {
                store_of(&st, RBAC_GROUP, r)
                    .map(|s| s.all())
                    .unwrap_or_default()
            })
            .collect();
        let mut fingerprint = [(0usize, 0u64); 4];
        for (f, objs) in fingerprint.iter_mut().zip(&objects) {
            *f = (
                objs.len(),
                objs.iter().fold(0u64, |a, o| a.wrapping_add(o.rv)),
            );
        }
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cache.as_mut()
            && c.fingerprint == fingerprint
        {
            c.global_rv = c.global_rv.max(rv);
            return c.index.clone();
        }
        let vals = |i: usize| -> Vec<&Value> { objects[i].iter().map(|o| &o.value).collect() };
        let index = Arc::new(Index::build(&vals(0), &vals(1), &vals(2), &vals(3)));
        *cache = Some(Cached {
            global_rv: rv,
            fingerprint,
            index: index.clone(),
        });
        index
    }

    /// Whether a user may perform a request, without producing an error or a record.
    pub fn allows(&self, user: &UserInfo, a: &Attributes<'_>) -> bool {
        is_master(user) || self.index().allows(user, a)
    }

    /// Turns the owner-reference permission checks ([`owners`]) on (the default) or off.
    pub fn set_owner_references_enforced(&self, on: bool) {
        self.owner_references.store(on, Ordering::Relaxed);
    }

    /// Makes requests without any `Authorization` header run as the admin instead of
    /// `system:anonymous`, like the legacy insecure port of the API server. `devcluster
    /// serve` does this on plain HTTP because kubectl never sends credentials to an
    /// `http://` server; bearer tokens are still checked.
    pub fn set_credentialless_admin(&self, on: bool) {
        self.credentialless_admin.store(on, Ordering::Relaxed);
    }

    /// The authorization decisions made so far for users outside `system:masters`: what
    /// was denied, and which rules of a role were never exercised.
    pub fn audit(&self) -> &audit::Audit {
        &self.audit
    }

    fn decide(&self, user: &UserInfo, a: &Attributes<'_>) -> Result<(), ApiError> {
        if is_master(user) {
            return Ok(());
        }
        let allowed = self.index().allows(user, a);
        self.audit.record(user, a, allowed);
        if allowed {
            Ok(())
        } else {
            Err(forbidden(user, a))
        }
    }

    #[allow(clippy::result_large_err)] // the error type of the subresource hook
    fn token_request(&self, req: &SubresourceRequest<'_>) -> Result<(u16, Value), ApiError> {
        let info = req.info;
        if req.method != http::Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let sa = req
            .cluster
            .get("", "serviceaccounts", &info.namespace, &info.name)
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &info.name))?;
        let body: Value = if req.body.is_empty() {
            json!({})
        } else if let Some(v) = wire::decode_token_request(&req.body) {
            v
        } else {
            crate::server::decode_body(&http::HeaderMap::new(), &req.body)?
        };
        if let Some(k) = body["kind"].as_str()
            && !k.is_empty()
            && k != "TokenRequest"
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({k}) does not match TokenRequest"
            )));
        }
        let spec = &body["spec"];
        let seconds = match &spec["expirationSeconds"] {
            Value::Null => DEFAULT_TOKEN_SECONDS,
            v => v.as_i64().ok_or_else(|| {
                ApiError::bad_request("spec.expirationSeconds must be an integer number of seconds")
            })?,
        };
        let too_long = 1i64 << 32;
        let problem = if seconds < MIN_TOKEN_SECONDS {
            Some("may not specify a duration less than 10 minutes")
        } else if seconds > too_long {
            Some("may not specify a duration larger than 2^32 seconds")
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                &info.name,
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {seconds}: {p}"),
                    field: "spec.expirationSeconds".into(),
                }],
            ));
        }
        let mut audiences: Vec<String> = spec["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if audiences.is_empty() {
            audiences.push(ISSUER.to_string());
        }
        let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
        let now = now_seconds();
        let exp = now + seconds;
        let claims = Claims::new(
            &info.namespace,
            &info.name,
            uid,
            audiences.clone(),
            now,
            exp,
        );
        let token = self.signer.sign(&claims);
        let stamp = |s: i64| {
            jiff::Timestamp::from_second(s)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        Ok((
            201,
            json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {
                    "name": info.name,
                    "namespace": info.namespace,
                    "creationTimestamp": stamp(now),
                },
                "spec": {
                    "audiences": audiences,
                    "expirationSeconds": seconds,
                    "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
                },
                "status": {
                    "token": token,
                    "expirationTimestamp": stamp(exp),
                },
            }),
        ))
    }
}

fn store_of(st: &State, group: &str, resource: &str) -> Option<Arc<Store>> {
    let def = st.def(group, resource)?;
    Some(st.store(&def.group_resource()))
}

fn is_master(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == MASTERS_GROUP)
}

/// The bearer token of a request: `Ok(None)` without an `Authorization` header, `Err` for
/// a header that is not a non-empty bearer token.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, ()> {
    let Some(h) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let s = h.to_str().map_err(|_| ())?;
    let (scheme, rest) = s.trim().split_once(' ').ok_or(())?;
    let t = rest.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || t.is_empty() {
        return Err(());
    }
    Ok(Some(t))
}

impl Auth {
    /// Applies `Impersonate-User` / `Impersonate-Group` headers: the requester needs the
    /// `impersonate` verb on `users`, `groups` or (for a `ServiceAccount` user name)
    /// `serviceaccounts`, as on a real server.
    fn impersonate(
        &self,
        requester: UserInfo,
        headers: &http::HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let header_values = |name: &http::HeaderName| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect()
        };
        let requested_groups = header_values(&IMPERSONATE_GROUP);
        let Some(username) = header_values(&IMPERSONATE_USER).into_iter().next() else {
            if requested_groups.is_empty() {
                return Ok(requester);
            }
            return Err(ApiError::internal(format!(
                "requested {requested_groups:?} without impersonating a user"
            )));
        };
        let mut checks: Vec<(String, String, String)> = Vec::new();
        let mut groups = requested_groups.clone();
        match username
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
        {
            Some((ns, name)) => {
                checks.push(("serviceaccounts".into(), ns.into(), name.into()));
                if groups.is_empty() {
                    groups = vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{ns}"),
                    ];
                }
            }
            None => checks.push(("users".into(), String::new(), username.clone())),
        }
        for g in &requested_groups {
            checks.push(("groups".into(), String::new(), g.clone()));
        }
        for (resource, namespace, name) in &checks {
            self.decide(
                &requester,
                &Attributes::Resource {
                    verb: "impersonate",
                    group: "",
                    resource,
                    subresource: "",
                    namespace,
                    name,
                },
            )?;
        }
        if username != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Ok(UserInfo {
            username,
            uid: String::new(),
            groups,
        })
    }
}

impl Authenticator for Auth {
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<UserInfo, ApiError> {
        let user = match bearer(headers).map_err(|()| unauthorized())? {
            None if self.credentialless_admin.load(Ordering::Relaxed) => UserInfo::admin(),
            None => anonymous(),
            Some(t) if t == self.admin_token => UserInfo::admin(),
            Some(t) => self.verify_token(t).map_err(|e| {
                tracing::debug!(error = %e, "bearer token refused");
                unauthorized()
            })?,
        };
        if headers.contains_key(&IMPERSONATE_USER) || headers.contains_key(&IMPERSONATE_GROUP) {
            return self.impersonate(user, headers);
        }
        Ok(user)
    }
}

impl Authorizer for Auth {
    fn authorize(&self, r: &RequestInfo) -> Result<(), ApiError> {
        self.decide(
            &r.user,
            &Attributes::Resource {
                verb: &r.verb,
                group: &r.group,
                resource: &r.resource,
                subresource: &r.subresource,
                namespace: &r.namespace,
                name: &r.name,
            },
        )
    }

    fn authorize_path(&self, user: &UserInfo, verb: &str, path: &str) -> Result<(), ApiError> {
        self.decide(user, &Attributes::Path { verb, path })
    }
}

impl AdmissionHook for Auth {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let info = request.info;
            if is_master(&info.user) {
                return Ok(());
            }
            let index = self.index();
            let authorize = |a: &Attributes<'_>| {
                let allowed = index.allows(&info.user, a);
                if allowed {
                    self.audit.record(&info.user, a, true);
                }
                allowed
            };
            if self.owner_references.load(Ordering::Relaxed) {
                let registry = request.cluster.0.registry();
                let decide = |a: &Attributes<'_>| {
                    let allowed = index.allows(&info.user, a);
                    self.audit.record(&info.user, a, allowed);
                    allowed
                };
                owners::check(
                    &registry,
                    &decide,
                    info,
                    request.operation,
                    object,
                    request.old_object,
                )?;
            }
            if info.group != RBAC_GROUP {
                return Ok(());
            }
            let role = |resource: &str, ns: &str, name: &str| {
                request.cluster.get(RBAC_GROUP, resource, ns, name)
            };
            escalation::check(
                &index,
                &escalation::Write {
                    info,
                    operation: request.operation,
                    object,
                    old: request.old_object,
                    role: &role,
                    authorize: &authorize,
                },
            )
        })
    }
}

impl SubresourceHandler for Auth {
    fn handle<'a>(
        &'a self,
        request: SubresourceRequest<'a>,
    ) -> BoxFuture<'a, Result<(u16, Value), ApiError>> {
        Box::pin(async move { self.token_request(&request) })
    }
}

/// Why a `ServiceAccount` credential could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The cluster was started without [`DevClusterBuilder::rbac`], so there is no token
    /// issuer.
    #[error("the cluster was started without rbac(true): ServiceAccount tokens are not issued")]
    RbacDisabled,
    /// The `TokenRequest` failed (e.g. the `ServiceAccount` does not exist).
    #[error("TokenRequest for serviceaccount {namespace}/{name} failed: {source}")]
    TokenRequest {
        /// `ServiceAccount` namespace.
        namespace: String,
        /// `ServiceAccount` name.
        name: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// The `TokenRequest` response had no `status.token`.
    #[error("TokenRequest for serviceaccount {namespace}/{name} returned no status.token")]
    NoToken {
        /// `ServiceAccount` namespace.
        namespace: String,
        /// `ServiceAccount` name.
        name: String,
    },
    /// kube refused the client configuration.
    #[error("cannot build a client for the ServiceAccount: {0}")]
    Client(kube::Error),
    /// The kubeconfig file could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DevClusterBuilder {
    /// Turns on authentication and RBAC authorization (and the `TokenRequest` subresource):
    /// the admin token stays a cluster admin, `ServiceAccount` tokens are checked against the
    /// stored RBAC objects, requests without a token run as `system:anonymous`. Replaces
    /// any authenticator and authorizer set with [`Self::hooks`].
    #[must_use]
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Serves HTTPS with a CA and serving certificate generated at start-up; the kubeconfig
    /// carries the CA as `certificate-authority-data`.
    #[must_use]
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
}

/// Writes a kubeconfig for one server and user.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
    namespace: &str,
) -> Result<(), std::io::Error> {
    use base64::Engine as _;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let ca = ca_pem.map_or_else(String::new, |p| {
        format!(
            "    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(p)
        )
    });
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: devcluster\n  cluster:\n    server: {server}\n{ca}contexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n    user: {user}\n    namespace: {namespace}\ncurrent-context: devcluster\nusers:\n- name: {user}\n  user:\n    token: {token}\n"
    );
    std::fs::write(path, text)
}

impl DevCluster {
    /// The authenticator/authorizer, when the cluster runs with [`DevClusterBuilder::rbac`].
    pub fn auth(&self) -> Option<&Arc<Auth>> {
        self.auth.as_ref()
    }

    /// The CA certificate (`PEM`) clients must trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Requests a token for a `ServiceAccount` through the `TokenRequest` API (as the admin).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        lifetime: Duration,
    ) -> Result<String, CredentialError> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        if self.auth.is_none() {
            return Err(CredentialError::RbacDisabled);
        }
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client(), namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![ISSUER.to_string()],
                expiration_seconds: Some(
                    i64::try_from(lifetime.as_secs()).unwrap_or(DEFAULT_TOKEN_SECONDS),
                ),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let resp = api
            .create_token_request(name, &kube::api::PostParams::default(), &req)
            .await
            .map_err(|source| CredentialError::TokenRequest {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        resp.status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CredentialError::NoToken {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
    }

    /// A client configuration authenticated as a `ServiceAccount` (token valid for a day,
    /// default namespace that of the `ServiceAccount`).
    pub async fn service_account_config(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Config, CredentialError> {
        let token = self
            .service_account_token(
                namespace,
                name,
                Duration::from_secs(SERVICE_ACCOUNT_TOKEN_SECONDS),
            )
            .await?;
        let mut config = self.config().clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..kube::config::AuthInfo::default()
        };
        config.default_namespace = namespace.to_string();
        Ok(config)
    }

    /// A kube client authenticated as a `ServiceAccount`.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, CredentialError> {
        let config = self.service_account_config(namespace, name).await?;
        kube::Client::try_from(config).map_err(CredentialError::Client)
    }

    /// Writes a kubeconfig authenticated as a `ServiceAccount` (for kubectl or a separate
    /// operator process).
    pub async fn write_service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<(), CredentialError> {
        let token = self
            .service_account_token(
                namespace,
                name,
                Duration::from_secs(SERVICE_ACCOUNT_TOKEN_SECONDS),
            )
            .await?;
        write_kubeconfig(
            path,
            &self.url(),
            self.ca_pem(),
            &format!("system:serviceaccount:{namespace}:{name}"),
            &token,
            namespace,
        )
        .map_err(|source| CredentialError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }
}
