//! agentic-operator: one binary running the Kubernetes controllers for AI-agent sessions,
//! evaluations and labs.
//!
//! [`runtime`] holds what every controller family shares; each family plugs in through
//! [`runtime::Family`] and is listed in [`families`].

#[cfg(feature = "dev")]
pub mod dev;
pub mod evaluations;
pub mod labs;
pub mod rbac;
pub mod render;
pub mod runtime;
pub mod sessions;
pub mod webhook;

use std::path::Path;

/// Every controller family built into this binary, in start order. A new family is added here.
pub fn families() -> Vec<Box<dyn runtime::Family>> {
    vec![
        Box::new(sessions::Sessions),
        Box::new(evaluations::Evaluations),
        Box::new(labs::Labs::from_settings()),
    ]
}

/// Errors of `agentic-operator crd`.
#[derive(Debug, thiserror::Error)]
pub enum CrdCommandError {
    /// The CRDs could not be rendered as YAML.
    #[error("cannot render the CRDs as YAML: {source}")]
    Render {
        /// The serializer error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that --out-dir exists and is writable")]
    Write {
        /// The file path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// All CRDs as one multi-document YAML stream (`agentic-operator crd`).
pub fn crds_yaml() -> Result<String, CrdCommandError> {
    agentic_api::crds::all_to_yaml().map_err(|source| CrdCommandError::Render { source })
}

/// Writes one `<group>_<plural>.yaml` per CRD into `dir` (`agentic-operator crd --out-dir`),
/// creating `dir` if needed, and returns the written paths.
pub fn write_crds(dir: &Path) -> Result<Vec<std::path::PathBuf>, CrdCommandError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdCommandError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let rendered =
        agentic_api::crds::rendered().map_err(|source| CrdCommandError::Render { source })?;
    let mut written = Vec::new();
    for (file_name, yaml) in rendered {
        let path = dir.join(file_name);
        std::fs::write(&path, yaml).map_err(|source| CrdCommandError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
