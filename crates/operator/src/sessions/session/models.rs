//! The models manifest: the platform's `ambient-models` `ConfigMap` (key `models.json`),
//! mounted at `/config/models` (`MODELS_MANIFEST_PATH` names another file). The runner gets
//! `LLM_MODEL_VERTEX_ID`, the Vertex AI name of its model, when the manifest lists the model
//! as available with a `vertexId`; otherwise the variable is left out, as upstream.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Where the manifest is read when `MODELS_MANIFEST_PATH` is not set.
pub const DEFAULT_MODELS_PATH: &str = "/config/models/models.json";

/// The manifest (fields this operator does not use are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ModelsManifest {
    /// The models.
    pub models: Vec<ModelEntry>,
}

/// One model of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModelEntry {
    /// The name sessions use (`spec.llmSettings.model`).
    pub id: String,
    /// Its Vertex AI name.
    pub vertex_id: String,
    /// Whether it may be used.
    pub available: bool,
}

impl ModelsManifest {
    /// The Vertex AI name of `model`, when an available entry gives one.
    pub fn vertex_id(&self, model: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|m| m.id == model && m.available)
            .map(|m| m.vertex_id.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The manifest file and its content read last.
#[derive(Debug)]
pub struct Models(super::mounted::JsonFile<ModelsManifest>);

impl Models {
    /// The manifest at `path`, read again at most every `refresh`.
    pub fn new(path: impl Into<PathBuf>, refresh: Duration) -> Self {
        Self(super::mounted::JsonFile::new(
            path,
            "models manifest",
            refresh,
        ))
    }

    /// The Vertex AI name of `model`; `None` without a manifest or an available entry.
    pub fn vertex_id(&self, model: &str) -> Option<String> {
        self.0.get()?.vertex_id(model).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"version": 2, "defaultModel": "claude-sonnet-4-5",
      "models": [
        {"id": "claude-sonnet-4-5", "label": "Claude Sonnet 4.5", "vertexId": "claude-sonnet-4-5@20250929", "provider": "anthropic", "available": true},
        {"id": "claude-opus-4-7", "vertexId": "claude-opus-4-7@default", "available": false},
        {"id": "no-vertex", "available": true}
      ]}"#;

    #[test]
    fn only_available_models_with_a_vertex_name_resolve() {
        let manifest: ModelsManifest = serde_json::from_str(MANIFEST).unwrap();
        assert_eq!(
            manifest.vertex_id("claude-sonnet-4-5"),
            Some("claude-sonnet-4-5@20250929")
        );
        assert_eq!(manifest.vertex_id("claude-opus-4-7"), None, "not available");
        assert_eq!(manifest.vertex_id("no-vertex"), None);
        assert_eq!(manifest.vertex_id("gpt"), None);
    }

    #[test]
    fn the_manifest_file_is_optional_and_a_bad_one_keeps_the_last() {
        let path = std::env::temp_dir().join(format!("models-unit-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let models = Models::new(&path, Duration::ZERO);
        assert_eq!(models.vertex_id("claude-sonnet-4-5"), None);
        std::fs::write(&path, MANIFEST).unwrap();
        assert_eq!(
            models.vertex_id("claude-sonnet-4-5").as_deref(),
            Some("claude-sonnet-4-5@20250929")
        );
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(
            models.vertex_id("claude-sonnet-4-5").as_deref(),
            Some("claude-sonnet-4-5@20250929"),
            "a broken file keeps the manifest read before"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(models.vertex_id("claude-sonnet-4-5"), None, "removed");
    }
}
