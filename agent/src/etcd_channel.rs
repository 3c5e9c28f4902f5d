//! The channel under the agent's etcd clients, with HTTP/2 flow-control
//! windows wide enough for a snapshot stream (see
//! [`steward_proto::windows`]): etcd streams a snapshot in 32 KiB
//! messages. etcd-client does not expose the windows, so the channel sets
//! them on every endpoint it is given. It also keeps the channel, for the
//! call the agent makes past etcd-client (see [`crate::etcd_snapshot`]).

use etcd_client::{BalancedChannelBuilder, Channel};
use steward_proto::windows::{CONNECTION_WINDOW, STREAM_WINDOW};
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

/// A balanced tonic channel whose endpoints get [`STREAM_WINDOW`] and
/// [`CONNECTION_WINDOW`]. Clones share the channel once it is built.
#[derive(Debug, Clone, Default)]
pub struct WideWindows {
    built: std::sync::Arc<std::sync::OnceLock<tonic::transport::Channel>>,
}

impl WideWindows {
    /// The channel built for a client, once the client is connected.
    #[must_use]
    pub fn channel(&self) -> Option<tonic::transport::Channel> {
        self.built.get().cloned()
    }
}

impl BalancedChannelBuilder for WideWindows {
    type Error = tonic::transport::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(Channel, tokio::sync::mpsc::Sender<Change<http::Uri, Endpoint>>), Self::Error> {
        let (channel, inner) = tonic::transport::Channel::balance_channel(buffer_size);
        let _ = self.built.set(channel.clone());
        let (outer, mut changes) = tokio::sync::mpsc::channel(buffer_size);
        // Ends when the client, and with it the sender, is dropped.
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let change = match change {
                    Change::Insert(uri, endpoint) => Change::Insert(uri, widen(endpoint)),
                    remove @ Change::Remove(_) => remove,
                };
                if inner.send(change).await.is_err() {
                    break;
                }
            }
        });
        Ok((Channel::Tonic(channel), outer))
    }
}

fn widen(endpoint: Endpoint) -> Endpoint {
    endpoint
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}
