//! Structured logging: JSON lines by default, human-readable with `DEV_MODE=true`.
//!
//! The level comes from `RUST_LOG` (default [`DEFAULT_FILTER`]). Logs go to stderr.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log filter used when `RUST_LOG` is not set. The kube client's own per-request error lines
/// are off because every failed call is reported, with context, by the code that made it.
pub const DEFAULT_FILTER: &str = "info,kube_client::client::builder=off";

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(dev_mode: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if dev_mode {
        registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    drop(result);
}

/// Routes panic messages through tracing so they appear as structured log lines.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        tracing::error!(%location, "panic: {message}");
    }));
}
