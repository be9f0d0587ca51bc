//! Extension points in the request path: authentication, authorization, admission, and
//! extra subresource handlers. The defaults let every request through as a cluster admin.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::Cluster;
use crate::error::ApiError;

/// Who is making a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `system:admin` or `system:serviceaccount:ns:name`.
    pub username: String,
    /// User uid.
    pub uid: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The built-in administrator every request runs as by default.
    pub fn admin() -> Self {
        Self {
            username: "system:admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

/// The attributes of a resource request, as an authorizer sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource, if any (`status`, `token`, ...).
    pub subresource: String,
    /// Namespace, empty for cluster-scoped requests.
    pub namespace: String,
    /// Object name, empty for collection requests.
    pub name: String,
    /// The authenticated user.
    pub user: UserInfo,
}

/// Turns request headers into a user. Return a 401 `ApiError` to reject.
pub trait Authenticator: Send + Sync {
    /// Authenticates one request.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<UserInfo, ApiError>;
}

/// Decides whether a user may perform a request. Return a 403 `ApiError` to deny.
pub trait Authorizer: Send + Sync {
    /// Authorizes one resource request.
    fn authorize(&self, request: &RequestInfo) -> Result<(), ApiError>;

    /// Authorizes a request for a path that names no resource (`/api`, `/version`,
    /// `/openapi/v2`, ...); `verb` is the lower-case HTTP method. The default allows it.
    fn authorize_path(&self, user: &UserInfo, verb: &str, path: &str) -> Result<(), ApiError> {
        let _ = (user, verb, path);
        Ok(())
    }
}

/// Admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Object creation (including create-on-apply).
    Create,
    /// Update, patch or apply of an existing object.
    Update,
    /// Deletion.
    Delete,
}

/// What an admission hook is told about a write.
pub struct AdmissionRequest<'a> {
    /// The request attributes.
    pub info: &'a RequestInfo,
    /// The operation.
    pub operation: Operation,
    /// `apiVersion` of the object.
    pub api_version: &'a str,
    /// `kind` of the object.
    pub kind: &'a str,
    /// The stored object before the write (updates and deletes).
    pub old_object: Option<&'a Value>,
    /// Whether this is a dry run.
    pub dry_run: bool,
    /// Read access to the cluster (e.g. webhook configurations).
    pub cluster: &'a Cluster,
}

/// Mutating and validating admission, run after defaulting and schema validation and before
/// the object is stored. The hook may change `object` (for deletes it is the stored object).
pub trait AdmissionHook: Send + Sync {
    /// Admits, mutates or rejects one write.
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// A request to a custom subresource route.
pub struct SubresourceRequest<'a> {
    /// The request attributes (resource, subresource, namespace, name, user).
    pub info: &'a RequestInfo,
    /// HTTP method.
    pub method: &'a http::Method,
    /// Request body.
    pub body: Bytes,
    /// Access to the cluster.
    pub cluster: &'a Cluster,
}

/// Serves one custom subresource (e.g. `serviceaccounts/{name}/token`). Returns the HTTP
/// status code and the JSON response body.
pub trait SubresourceHandler: Send + Sync {
    /// Handles one request.
    fn handle<'a>(
        &'a self,
        request: SubresourceRequest<'a>,
    ) -> BoxFuture<'a, Result<(u16, Value), ApiError>>;
}

/// `(group, resource, subresource)` naming a custom subresource route.
pub type SubresourceKey = (String, String, String);

/// The set of hooks a server runs with.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Authentication; `None` treats every request as [`UserInfo::admin`].
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Authorization; `None` allows everything.
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// Admission chain, run in order.
    pub admission: Vec<Arc<dyn AdmissionHook>>,
    /// Extra subresources keyed by `(group, resource, subresource)`.
    pub subresources: Vec<(SubresourceKey, Arc<dyn SubresourceHandler>)>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("authenticator", &self.authenticator.is_some())
            .field("authorizer", &self.authorizer.is_some())
            .field("admission", &self.admission.len())
            .field("subresources", &self.subresources.len())
            .finish()
    }
}

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Adds a warning to the response of the request being served; clients see it as a
/// `Warning: 299 - "..."` header (kubectl prints `Warning: ...`). Outside a request it does
/// nothing.
pub fn add_warning(message: impl Into<String>) {
    let message = message.into();
    let _ = WARNINGS.try_with(|w| w.borrow_mut().push(message));
}

/// Runs a request future, collecting the warnings added with [`add_warning`] while it runs.
pub async fn collect_warnings<F: Future>(f: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async move {
            let out = f.await;
            let warnings = WARNINGS.with(RefCell::take);
            (out, warnings)
        })
        .await
}

/// Appends one `Warning: 299 - "<text>"` header per warning, skipping duplicates.
pub fn append_warning_headers(headers: &mut http::HeaderMap, warnings: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for w in warnings {
        if !seen.insert(w.as_str()) {
            continue;
        }
        let text: String = w
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_bytes(format!("299 - \"{text}\"").as_bytes()) {
            headers.append(http::header::WARNING, v);
        }
    }
}
