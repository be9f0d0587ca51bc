//! Process shutdown: SIGTERM/SIGINT handling and the token every loop watches.
//!
//! The first signal cancels the [`CancellationToken`]: controllers stop taking new work, let
//! in-flight reconciles finish, and the leader releases its Lease. A second signal exits at
//! once with status 130.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT and exits the process on the second.
///
/// The handlers are installed before this function returns, so a signal that arrives right
/// after it (for example as soon as the process reports ready) is never handled by the
/// default action, which would kill the process without a graceful shutdown.
pub fn spawn_signal_handler(token: CancellationToken) {
    let mut signals = Signals::install();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!(
            "shutdown requested; finishing in-flight reconciles (signal again to force)"
        );
        token.cancel();
        signals.recv().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
}

/// Resolves on the next SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    Signals::install().recv().await;
}

/// SIGINT and SIGTERM listeners, registered with the runtime as soon as they are created.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers the listeners now (must be called inside the Tokio runtime).
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next signal of either kind; never resolves when neither is available.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(listener: Option<&mut tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        if listener.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt.as_mut()) => {}
                () = next(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIGTERM sent right after the handler is installed, before its task has run, cancels
    /// the token instead of killing the test process.
    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn a_signal_right_after_installation_is_handled() {
        let token = CancellationToken::new();
        spawn_signal_handler(token.clone());
        // The spawned task has not been polled yet on this single-threaded runtime.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(std::time::Duration::from_mins(1), token.cancelled())
            .await
            .expect("the token is cancelled by the signal");
    }
}
