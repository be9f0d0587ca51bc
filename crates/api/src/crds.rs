//! Generation of the `CustomResourceDefinition` manifests for every kind in this crate.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{evaluations, labs, sessions};

/// Every CRD this crate defines, in a stable order (group, then kind).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        labs::Component::crd(),
        labs::Experiment::crd(),
        evaluations::Experiment::crd(),
        sessions::AgenticSession::crd(),
        sessions::ProjectSettings::crd(),
    ]
}

/// The file name a CRD is stored under in `config/crd/bases/`: `<group>_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Renders one CRD as a YAML document (no leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Renders all CRDs as one multi-document YAML stream, each document preceded by `---`.
pub fn all_to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Every CRD with the file name it is stored under and its YAML text, in [`all`]'s order.
pub fn rendered() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// Writes every CRD to `dir/<file_name>` (creating `dir` if needed), one file per CRD.
///
/// Files of other names in `dir` are left alone.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, yaml) in rendered().map_err(std::io::Error::other)? {
        std::fs::write(dir.join(name), yaml)?;
    }
    Ok(())
}
