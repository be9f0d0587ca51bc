//! Generation of the `CustomResourceDefinition` manifests for every kind in this crate.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::{evaluations, labs, sessions};

/// Every CRD this crate defines, in a stable order (group, then kind).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        labs::Component::crd(),
        labs::Experiment::crd(),
        evaluations::Experiment::crd(),
        sessions::AgenticSession::crd(),
        sessions::ProjectSettings::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                strip_nullable(schema);
            }
        }
    }
    crds
}

/// Removes `nullable: true`, which the schema generator puts on every optional field. The
/// upstream CRDs (controller-gen) have none, so the API server drops a `null` in such a field
/// before defaulting and validation: `scenarios: null` next to a `dataset` (as templating
/// tools write empty values) is accepted, and `defaultThreshold: null` gets the default 0.9.
/// With `nullable: true` the `null` would be stored, fail the CEL rules and skip the default.
fn strip_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().flat_map(|i| match i {
            JSONSchemaPropsOrArray::Schema(s) => std::slice::from_mut(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(v) => v.as_mut_slice(),
        }))
        .chain(
            schema
                .additional_properties
                .iter_mut()
                .filter_map(|a| match a {
                    JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
                    JSONSchemaPropsOrBool::Bool(_) => None,
                }),
        )
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.iter_mut().map(AsMut::as_mut));
    for child in children {
        strip_nullable(child);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// No field is nullable, as in the upstream CRDs (see [`strip_nullable`]).
    #[test]
    fn no_field_is_nullable() {
        let yaml = all_to_yaml().unwrap();
        assert!(!yaml.contains("nullable"), "a nullable field is left");
        // The generator does mark optional fields; the stripping is what removes them.
        let raw = serde_yaml::to_string(&evaluations::Experiment::crd()).unwrap();
        assert!(raw.contains("nullable: true"));
    }
}
