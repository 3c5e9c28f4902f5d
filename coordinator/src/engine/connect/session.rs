//! The connections of one cluster, kept between observations: an
//! observation asks every agent every poll, and a fresh mutual-TLS
//! connection each time costs a handshake per agent per poll. A
//! [`Session`] keeps one channel per agent; a call that fails on a kept
//! channel drops it, and the caller asks again on a fresh connection, so
//! an agent that went away is still reported as unreachable, with the
//! connection error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::transport::Channel;

use crate::engine::address::AgentAddress;

/// The kept agent channels of one cluster. Clones share them; a
/// [`super::Connector`] whose settings change starts a new session.
#[derive(Clone, Default)]
pub struct Session {
    agents: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("agents", &self.kept()).finish()
    }
}

impl Session {
    /// The channel kept for `address`, if any.
    #[must_use]
    pub fn agent(&self, address: &AgentAddress) -> Option<Channel> {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&address.to_string())
            .cloned()
    }

    /// Keeps `channel` for `address`.
    pub fn keep(&self, address: &AgentAddress, channel: Channel) {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.to_string(), channel);
    }

    /// Drops the channel of `address` (a call on it failed).
    pub fn forget(&self, address: &AgentAddress) {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&address.to_string());
    }

    /// How many channels are kept.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}
