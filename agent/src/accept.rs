//! TLS connections of a listener: each handshake runs in its own task with
//! a time limit, so a slow or broken client delays nobody else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake completed, with the peer's address.
pub type Connections = tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>;

/// Accepts on `listener` until the receiver is dropped. A failed handshake
/// (a certificate of another CA, expired, unfit for a caller; no TLS at
/// all) is counted in `metrics` and logged once per peer address and
/// minute.
pub fn tls_connections(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    metrics: Option<std::sync::Arc<crate::metrics::RpcMetrics>>,
) -> Connections {
    let failures = std::sync::Arc::new(crate::refusal_log::RefusalLog::default());
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            let metrics = metrics.clone();
            let failures = std::sync::Arc::clone(&failures);
            tokio::spawn(async move {
                let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send((stream, peer)).await;
                        return;
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                };
                if let Some(metrics) = &metrics {
                    metrics.handshake_failed();
                }
                if let Some(held_back) = failures.admit(peer.ip(), std::time::Instant::now()) {
                    tracing::warn!(
                        peer = %peer.ip(),
                        reason = %crate::bounded::bounded(&why, crate::bounded::LOG_TEXT),
                        "TLS handshake refused{}",
                        crate::refusal_log::held_back_text(held_back)
                    );
                }
            });
        }
    });
    receiver
}
