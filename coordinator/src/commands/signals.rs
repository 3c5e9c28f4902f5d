//! Ctrl-C and SIGTERM during a run: the first asks the engine to stop at
//! its next safe point (it then releases the lock and reports
//! `cancelled`); a second ends steward at once, as an impatient operator
//! expects.

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::exit;

/// Stops listening when dropped, so signals after the run behave as usual.
#[derive(Debug)]
pub struct SignalGuard(JoinHandle<()>);

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels `cancel` on the first SIGINT or SIGTERM.
#[must_use]
pub fn cancel_on_signal(cancel: CancellationToken) -> SignalGuard {
    SignalGuard(tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            tracing::warn!("cannot listen for Ctrl-C and SIGTERM; they end steward at once");
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!("stopping at the next safe point (the lock is released); a second signal ends steward now");
        cancel.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        std::process::exit(i32::from(exit::CANCELLED));
    }))
}
