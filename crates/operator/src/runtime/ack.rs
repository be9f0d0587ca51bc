//! Writes whose answer is read only for the written object's identity.
//!
//! kube's `Api` decodes every write's answer into the full typed object, `managedFields`
//! and all, which a controller that learns objects from its watches throws away. In a burst
//! that decoding is a large share of the operator's CPU per write. These helpers send the
//! same requests (built by kube's request builder, so URL, query and content type are
//! identical) and decode only [`Ack`]; errors come back as the same `kube::Error`s.

use kube::{
    Client, Resource,
    api::{Patch, PatchParams, PostParams},
    core::Request,
};
use serde::{Deserialize, Serialize};

/// The identity of the object a write produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ack {
    /// Name, uid and resourceVersion of the written object.
    #[serde(default)]
    pub metadata: AckMeta,
}

/// The parts of `metadata` an [`Ack`] keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `metadata.uid`.
    #[serde(default)]
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    #[serde(default)]
    pub resource_version: Option<String>,
}

fn collection<K: Resource<DynamicType = ()>>(ns: &str) -> Request {
    Request::new(K::url_path(&(), Some(ns)))
}

/// `PATCH` of the namespaced object `ns/name` of kind `K`.
///
/// # Errors
/// The API's answer when it is not a success, or a transport or decoding error.
pub async fn patch<K, P>(
    client: &Client,
    ns: &str,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<Ack, kube::Error>
where
    K: Resource<DynamicType = ()>,
    P: Serialize + std::fmt::Debug,
{
    let req = collection::<K>(ns)
        .patch(name, params, patch)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<Ack>(req).await
}

/// `PATCH` of the `status` subresource of `ns/name` of kind `K`.
///
/// # Errors
/// As [`patch`].
pub async fn patch_status<K, P>(
    client: &Client,
    ns: &str,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<Ack, kube::Error>
where
    K: Resource<DynamicType = ()>,
    P: Serialize + std::fmt::Debug,
{
    let req = collection::<K>(ns)
        .patch_subresource("status", name, params, patch)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<Ack>(req).await
}

/// `POST` of `object` into namespace `ns`.
///
/// # Errors
/// As [`patch`].
pub async fn create<K>(
    client: &Client,
    ns: &str,
    params: &PostParams,
    object: &K,
) -> Result<Ack, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let req = collection::<K>(ns)
        .create(params, body)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<Ack>(req).await
}
