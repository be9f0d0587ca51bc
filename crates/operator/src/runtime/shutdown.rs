//! Process shutdown: SIGTERM/SIGINT handling and the token every loop watches.
//!
//! The first signal cancels the [`CancellationToken`]: controllers stop taking new work, let
//! in-flight reconciles finish, and the leader releases its Lease. A second signal exits at
//! once with status 130.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT and exits the process on the second.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            "shutdown requested; finishing in-flight reconciles (signal again to force)"
        );
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
}

/// Resolves on the next SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the operator");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
