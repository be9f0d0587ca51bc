//! JSON files the platform mounts from `ConfigMap`s (the agent registry, the models manifest):
//! read when first needed and again at most once per refresh interval, so a `ConfigMap`
//! change reaches new runs without a restart. A missing file means "not configured"; a file
//! that stops reading or parsing keeps what was read before (logged).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::de::DeserializeOwned;

/// When the file was last read, and the content then in effect (`None`: no file).
type Read<T> = (Instant, Option<Arc<T>>);

/// One mounted JSON file of type `T` and its content read last.
#[derive(Debug)]
pub struct JsonFile<T> {
    path: PathBuf,
    what: &'static str,
    refresh: Duration,
    cache: Mutex<Option<Read<T>>>,
}

impl<T: DeserializeOwned> JsonFile<T> {
    /// The file at `path` (`what` names it in logs), read again after `refresh`.
    pub fn new(path: impl Into<PathBuf>, what: &'static str, refresh: Duration) -> Self {
        Self {
            path: path.into(),
            what,
            refresh,
            cache: Mutex::new(None),
        }
    }

    /// Where the file is read.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The content, read again when the last read is older than the refresh interval.
    /// `None` while there is no file.
    pub fn get(&self) -> Option<Arc<T>> {
        let Ok(mut cache) = self.cache.lock() else {
            return None;
        };
        if let Some((at, content)) = cache.as_ref()
            && at.elapsed() < self.refresh
        {
            return content.clone();
        }
        let previous = cache.as_ref().and_then(|(_, c)| c.clone());
        let content = match std::fs::read_to_string(&self.path) {
            Ok(text) => match serde_json::from_str::<T>(&text) {
                Ok(value) => Some(Arc::new(value)),
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "the {} does not parse; keeping what was read before", self.what);
                    previous
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the {}; keeping what was read before", self.what);
                previous
            }
        };
        *cache = Some((Instant::now(), content.clone()));
        content
    }
}
