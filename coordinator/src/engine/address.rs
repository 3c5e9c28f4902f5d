//! An agent's address as the operator writes it, validated once: every
//! error, report and event names agents by it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tonic::transport::Uri;

/// An agent's address: `host:port`, written by the operator as `host:port`,
/// `https://host:port` (mutual TLS) or `http://host:port` (plaintext, for
/// agents in insecure development mode). Displays as `host:port`; two
/// addresses are equal when their hosts and ports are.
#[derive(Clone, Debug)]
pub struct AgentAddress {
    // Shared: every error names its agent, and a bare Uri would make the
    // error type several times larger.
    inner: Arc<Parsed>,
}

#[derive(Debug)]
struct Parsed {
    uri: Uri,
    written: Scheme,
}

/// The scheme an address was written with, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `host:port`: TLS when the caller has agent TLS, plaintext otherwise.
    None,
    /// `http://`: plaintext.
    Http,
    /// `https://`: mutual TLS.
    Https,
}

impl PartialEq for AgentAddress {
    fn eq(&self, other: &Self) -> bool {
        self.inner.uri == other.inner.uri
    }
}

impl Eq for AgentAddress {}

/// Why a string is not an agent address.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("the agent address is empty")]
    Empty,
    /// The scheme is neither http nor https.
    #[error("{input:?}: scheme {scheme:?} is not supported (use host:port, https://host:port or http://host:port)")]
    Scheme {
        /// What was given.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// The text is not a URI authority.
    #[error("{input:?} is not host:port")]
    Malformed {
        /// What was given.
        input: String,
        /// What the URI parser said.
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    /// The port is missing; agents have no well-known port to fall back to.
    #[error("{input:?} has no port (use host:port)")]
    NoPort {
        /// What was given.
        input: String,
    },
    /// There is a path, query or user info, which an agent address never has.
    #[error("{input:?} must be only host:port, without a path")]
    Extra {
        /// What was given.
        input: String,
    },
}

impl AgentAddress {
    /// The plaintext URI (`http://host:port`); with mutual TLS the channel
    /// connects to `https://host:port` of the same authority.
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.inner.uri
    }

    /// The scheme the operator wrote.
    #[must_use]
    pub fn written_scheme(&self) -> Scheme {
        self.inner.written
    }
}

impl FromStr for AgentAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        let (full, written) = match trimmed.split_once("://") {
            Some(("http", _)) => (trimmed.to_owned(), Scheme::Http),
            Some(("https", rest)) => (format!("http://{rest}"), Scheme::Https),
            Some((scheme, _)) => {
                return Err(AddressError::Scheme {
                    input: input.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
            None => (format!("http://{trimmed}"), Scheme::None),
        };
        let uri: Uri = full.parse().map_err(|source| AddressError::Malformed {
            input: input.to_owned(),
            source,
        })?;
        let Some(authority) = uri.authority() else {
            return Err(AddressError::Extra {
                input: input.to_owned(),
            });
        };
        if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(AddressError::Extra {
                input: input.to_owned(),
            });
        }
        if authority.port_u16().is_none() {
            return Err(AddressError::NoPort {
                input: input.to_owned(),
            });
        }
        Ok(Self {
            inner: Arc::new(Parsed { uri, written }),
        })
    }
}

impl fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Checked in from_str: every AgentAddress has an authority.
        match self.inner.uri.authority() {
            Some(authority) => f.write_str(authority.as_str()),
            None => write!(f, "{}", self.inner.uri),
        }
    }
}
