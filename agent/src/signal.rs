//! The signals of the agent process. Tests and embedders pass their own
//! shutdown future to [`crate::server::run`] instead.
//!
//! - SIGTERM (`systemctl stop`, `restart`) and SIGINT (Ctrl-C) start the
//!   graceful shutdown; etcd keeps running.
//! - SIGHUP is logged and otherwise ignored. Its default action would end
//!   the agent, and systemd counts a death by SIGHUP as a clean exit, so
//!   `Restart=on-failure` would not bring the agent back and etcd would run
//!   unsupervised. The agent has nothing to reload in place: every setting
//!   is read at start, and restarting the agent is cheap and safe (etcd keeps
//!   running and is adopted), so `systemctl restart steward-agent` is the
//!   reload.
//!
//! The handlers are installed by [`Signals::install`], as the agent starts:
//! a signal that arrives while it is still starting waits for the shutdown
//! future instead of meeting the default action.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The agent's installed signal handlers.
#[derive(Debug)]
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// A handler cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT; a SIGHUP is logged and
    /// ignored.
    pub async fn shutdown(self) {
        self.shutdown_noting_hangups(|| {}).await;
    }

    /// [`Signals::shutdown`], calling `on_hangup` after each SIGHUP it
    /// ignored.
    async fn shutdown_noting_hangups(mut self, mut on_hangup: impl FnMut()) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    tracing::info!("SIGTERM received");
                    return;
                }
                _ = self.interrupt.recv() => {
                    tracing::info!("SIGINT received");
                    return;
                }
                _ = self.hangup.recv() => {
                    tracing::info!(
                        "SIGHUP received and ignored: the agent reads its config only at start; restart it to apply \
                         changes (etcd keeps running)"
                    );
                    on_hangup();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::{Signal as Sig, raise};

    use super::*;

    #[tokio::test]
    async fn sighup_is_ignored_and_sigterm_shuts_down() {
        let signals = Signals::install().unwrap();
        let (noted, mut hangups) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = tokio::spawn(signals.shutdown_noting_hangups(move || {
            let _ = noted.send(());
        }));

        // The handler is installed: without it SIGHUP would end the test run.
        raise(Sig::SIGHUP).unwrap();
        tokio::time::timeout(Duration::from_secs(10), hangups.recv())
            .await
            .expect("SIGHUP noticed")
            .expect("channel open");
        assert!(!shutdown.is_finished(), "SIGHUP must not shut the agent down");

        raise(Sig::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .expect("SIGTERM shuts down")
            .unwrap();
    }
}
