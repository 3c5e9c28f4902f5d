//! TLS connections of a listener: each handshake runs in its own task with
//! a time limit, so a slow or broken client delays nobody else, and the
//! connections held at once are capped, in all and per peer address, so
//! that nobody can exhaust the agent's file descriptors or memory. A
//! connection over a cap is closed as soon as it is accepted; connections
//! already open (a coordinator's) go on being served. Every accepted
//! connection, with TLS or without, sends small writes at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How much a connection's TLS may hold encrypted and not yet sent
/// (rustls's default is 64 KiB). A snapshot goes out in 1 MiB HTTP/2
/// frames: the records of a whole frame then leave in one write.
const SEND_BUFFER: usize = 1 << 20;

/// A connection whose handshake completed, holding its place under the
/// caps until it closes.
pub type Connection = Limited<TlsStream<TcpStream>>;

/// Connections whose handshake completed, with the peer's address.
pub type Connections = tokio::sync::mpsc::Receiver<(Connection, SocketAddr)>;

/// How many connections may be open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// In all, handshakes included.
    pub total: usize,
    /// From one peer address.
    pub per_peer: usize,
}

/// The connections open now.
#[derive(Debug)]
struct Open {
    caps: ConnectionCaps,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Open {
    /// A place for a connection from `peer`, or `None` over a cap.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_peer) = &mut *counts;
        let from_peer = per_peer.entry(peer).or_insert(0);
        if *total >= self.caps.total || *from_peer >= self.caps.per_peer {
            if *from_peer == 0 {
                per_peer.remove(&peer);
            }
            return None;
        }
        *from_peer += 1;
        *total += 1;
        Some(Slot {
            open: Arc::clone(self),
            peer,
        })
    }
}

/// One connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Open>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_peer) = &mut *counts;
        *total = total.saturating_sub(1);
        if let Some(from_peer) = per_peer.get_mut(&self.peer) {
            *from_peer = from_peer.saturating_sub(1);
            if *from_peer == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

/// A stream that holds its [`Slot`] while it is open.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Limited<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts on `listener` until the receiver is dropped, within `caps`. A
/// connection over a cap, or a failed handshake (a certificate of another
/// CA, expired, unfit for a caller; no TLS at all), is counted in
/// `metrics` and logged once per peer address and minute.
pub fn tls_connections(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    caps: ConnectionCaps,
    metrics: Option<Arc<crate::metrics::RpcMetrics>>,
) -> Connections {
    let failures = Arc::new(crate::refusal_log::RefusalLog::default());
    let open = Arc::new(Open {
        caps,
        counts: Mutex::new((0, HashMap::new())),
    });
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
            send_at_once(&tcp);
            let Some(slot) = open.take(peer.ip()) else {
                drop(tcp);
                if let Some(metrics) = &metrics {
                    metrics.connection_refused();
                }
                if let Some(held_back) = failures.admit(peer.ip(), std::time::Instant::now()) {
                    tracing::warn!(
                        peer = %peer.ip(),
                        total = caps.total,
                        per_peer = caps.per_peer,
                        "connection closed: over the cap of open connections (limits.max_connections, \
                         limits.max_connections_per_peer){}",
                        crate::refusal_log::held_back_text(held_back)
                    );
                }
                continue;
            };
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            let metrics = metrics.clone();
            let failures = Arc::clone(&failures);
            tokio::spawn(async move {
                let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(mut stream)) => {
                        stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
                        let connection = Limited {
                            inner: stream,
                            _slot: slot,
                        };
                        let _ = sender.send((connection, peer)).await;
                        return;
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                };
                drop(slot);
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

/// Plaintext connections of `listener` (an agent without TLS, on
/// loopback only), each sending small writes at once.
pub fn plaintext_connections(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |accepted| {
        accepted.inspect(send_at_once)
    })
}

/// Turns Nagle's algorithm off on an accepted connection. A gRPC or HTTP
/// answer goes out in several small writes (headers, body, trailers);
/// with Nagle on, each write after the first waits until the caller has
/// acknowledged the one before, and callers delay that acknowledgement
/// (40 ms on Linux): every call took 40 ms longer than its work. tonic
/// and axum set this only on listeners they bind themselves.
pub fn send_at_once(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot turn Nagle's algorithm off on a connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server config for 127.0.0.1 and a client config that trusts it.
    fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    // See `send_at_once`: without it, every call waits 40 ms for nothing.
    #[tokio::test]
    async fn tls_connections_send_small_writes_at_once() {
        let (server, client) = tls_pair();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let caps = ConnectionCaps { total: 4, per_peer: 4 };
        let mut connections = tls_connections(listener, TlsAcceptor::from(server), caps, None);
        let dialing = tokio::spawn(async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .unwrap()
        });
        let (connection, _) = connections.recv().await.unwrap();
        let _client = dialing.await.unwrap();
        assert!(connection.inner.get_ref().0.nodelay().unwrap());
    }

    #[tokio::test]
    async fn plaintext_connections_send_small_writes_at_once() {
        use futures::StreamExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut connections = std::pin::pin!(plaintext_connections(listener));
        let _client = TcpStream::connect(address).await.unwrap();
        let connection = connections.next().await.unwrap().unwrap();
        assert!(connection.nodelay().unwrap());
    }

    #[test]
    fn places_are_capped_in_all_and_per_peer_and_given_back() {
        let open = Arc::new(Open {
            caps: ConnectionCaps { total: 3, per_peer: 2 },
            counts: Mutex::new((0, HashMap::new())),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let first = open.take(a).unwrap();
        let _second = open.take(a).unwrap();
        assert!(open.take(a).is_none(), "per peer");
        let _third = open.take(b).unwrap();
        assert!(open.take(c).is_none(), "in all");
        drop(first);
        assert!(open.take(c).is_some(), "a place given back is free again");
        assert!(
            !open.counts.lock().unwrap().1.contains_key(&c),
            "and forgotten once closed"
        );
    }
}
