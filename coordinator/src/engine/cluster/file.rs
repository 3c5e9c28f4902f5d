//! The cluster description file: which members a cluster has, where each
//! member's agent listens and, optionally, its etcd client URL. `steward
//! local up` writes one; for real hosts an operator writes it by hand. The
//! cluster-wide commands (status, plan, upgrade, ...) take it with
//! `--cluster FILE`, or take the agents directly with `--agents
//! ADDR,ADDR,...`; both resolve into a [`ClusterTarget`].
//!
//! ```toml
//! # steward cluster description
//! name = "local-3"                        # optional label
//!
//! [[members]]
//! name = "m0"                             # etcd's --name; the agent must report the same
//! agent = "127.0.0.1:7400"                # the agent's gRPC address
//! client_url = "http://127.0.0.1:2379"    # optional: else the agent's GetStatus client_urls
//!
//! [etcd]                                  # optional: how steward reaches etcd
//! cacert = "etcd/ca.crt"                  # relative to this file
//! cert = "etcd/client.crt"
//! key = "etcd/client.key"
//! user = "root"                           # for clusters with auth enabled
//! password_file = "etcd/root.password"    # its first line; never the password itself
//!
//! [agent_tls]                             # optional: mutual TLS towards the agents
//! cacert = "agents/ca.crt"
//! cert = "agents/steward.crt"
//! key = "agents/steward.key"
//!
//! [local]                                 # only for clusters made by `steward local up`
//! dir = "/tmp/demo"
//! binaries = "/root/.cache/steward/etcd"
//! ```
//!
//! The command line's flags win over the file. Unknown fields are refused,
//! so an older steward reading a newer file says which field it does not
//! know instead of silently ignoring it.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tonic::codegen::http::Uri;

use crate::engine::connect::Connector;
use crate::engine::connect::agent::{AddressError, AgentAddress};
use crate::engine::connect::etcd::Credentials;
use crate::engine::error::{Error, Unacceptable};

/// The conventional file name inside a local cluster's directory.
pub const FILE_NAME: &str = "cluster.toml";

/// The first lines of every file steward writes.
const HEADER: &str = "# steward cluster description: the members, their agents and client URLs\n";

/// A validated cluster description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// A label for people and reports; steward does not interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How steward connects to etcd itself (reserved: TLS and auth settings
    /// come here).
    #[serde(default, skip_serializing_if = "EtcdSettings::is_default")]
    pub etcd: EtcdSettings,
    /// Mutual TLS towards the agents: this caller's CA, certificate and key
    /// (relative paths are taken from the file's directory). The
    /// `--agent-cacert/--agent-cert/--agent-key` flags win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_tls: Option<crate::engine::connect::agent::AgentTlsFiles>,
    /// The members, at least one; names, agent addresses and client URLs are
    /// each unique.
    pub members: Vec<MemberEntry>,
    /// Present only for clusters made by `steward local up`: what `steward
    /// local down` needs, and a guard that it never stops real hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSection>,
}

/// `[etcd]`: how steward reaches etcd's client API: the CA of the members'
/// certificates and a client certificate and key, as etcdctl's `--cacert`,
/// `--cert`, `--key` (relative paths are taken from the file's directory).
/// Empty: plain http. The flags win.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSettings {
    /// The CA of the members' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
    /// A client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The etcd user, for clusters with auth enabled (`--user` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the user's password (its first line). The password
    /// itself never goes into the cluster file, which is shared and
    /// printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl EtcdSettings {
    /// The TLS files, relative paths taken from `base`.
    #[must_use]
    pub fn tls_files(&self, base: &Path) -> crate::engine::connect::etcd::EtcdTlsFiles {
        let resolve = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| if p.is_absolute() { p.clone() } else { base.join(p) })
        };
        crate::engine::connect::etcd::EtcdTlsFiles {
            cacert: resolve(&self.cacert),
            cert: resolve(&self.cert),
            key: resolve(&self.key),
        }
    }
}

impl EtcdSettings {
    /// The etcd user and the password from `password_file` (relative to
    /// `base`), when a user is set.
    ///
    /// # Errors
    /// The password file cannot be read, is empty, or is given without a
    /// user (or a user without it).
    pub fn credentials(&self, base: &Path) -> Result<Option<Credentials>, Error> {
        let (user, file) = match (&self.user, &self.password_file) {
            (None, None) => return Ok(None),
            (Some(user), Some(file)) => (user, file),
            (Some(_), None) => return Err(Error::Invalid("[etcd] user needs password_file".into())),
            (None, Some(_)) => return Err(Error::Invalid("[etcd] password_file needs user".into())),
        };
        let path = if file.is_absolute() {
            file.clone()
        } else {
            base.join(file)
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            return Err(Error::Invalid(format!(
                "[etcd] password_file {}: the first line is empty",
                path.display()
            )));
        }
        Ok(Some(Credentials::new(user.clone(), password.to_owned())))
    }

    /// True when nothing is set (the table is then left out when written).
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[[members]]`: one etcd member and the agent that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// etcd's `--name` for this member. The agent at `agent` must report the
    /// same name, which is how a mix-up of addresses is caught.
    pub name: String,
    /// The agent's gRPC address, `host:port` (or `http://host:port`).
    #[serde(with = "address_text")]
    pub agent: AgentAddress,
    /// The member's etcd client URL (`http://host:port` or
    /// `https://host:port`). When absent, the first of the client URLs the
    /// agent reports in GetStatus is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
}

/// `[local]`: the cluster was made on this machine by `steward local up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// The cluster's directory (absolute): one `m<i>/` per member with the
    /// agent's config, state dir, data dir and log, and the record of the
    /// agent processes (`local-processes.toml`).
    pub dir: PathBuf,
    /// The etcd release directory the agents import binaries from
    /// (absolute), laid out as `scripts/setup-etcd` does:
    /// `<binaries>/<version>/etcd`.
    pub binaries: PathBuf,
}

/// Why a cluster description cannot be used. Each names the file and, for a
/// content problem, the field.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    /// The file cannot be read.
    #[error("cannot read the cluster file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape (an
    /// unknown or missing field, a malformed agent address). The parser's
    /// message names the line and the field.
    #[error("cluster file {path} is malformed")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A field's value is not acceptable.
    #[error("cluster file {path}: {field} {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `members[1].name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The description cannot be turned into TOML (a bug, not an input
    /// problem).
    #[error("cannot encode the cluster description for {path}")]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::ser::Error,
    },
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A file could not be written atomically.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct WriteError {
    /// What we were doing ("create a temp file next to", "fsync", ...).
    pub action: &'static str,
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl ClusterFile {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// [`ClusterFileError`] naming the file, and the field for a content
    /// problem.
    pub fn load(path: &Path) -> Result<Self, ClusterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path` (used in errors).
    ///
    /// # Errors
    /// As [`ClusterFile::load`], without the read.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ClusterFileError> {
        let file: Self = toml::from_str(text).map_err(|source| ClusterFileError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// Checks what the types cannot: at least one member, names usable as
    /// etcd member names, unique names, agents and client URLs, URL shapes,
    /// absolute local paths.
    ///
    /// # Errors
    /// [`ClusterFileError::Invalid`] naming `path` and the field.
    pub fn validate(&self, path: &Path) -> Result<(), ClusterFileError> {
        let invalid = |field: String, reason: String| ClusterFileError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        if let Some(name) = &self.name
            && name.trim().is_empty()
        {
            return Err(invalid("name".into(), "is empty (leave it out instead)".into()));
        }
        if self.members.is_empty() {
            return Err(invalid("members".into(), "must list at least one member".into()));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut agents: HashMap<String, usize> = HashMap::new();
        let mut clients: HashMap<&str, usize> = HashMap::new();
        for (i, member) in self.members.iter().enumerate() {
            if let Err(reason) = check_member_name(&member.name) {
                return Err(invalid(format!("members[{i}].name"), reason.0));
            }
            if let Some(first) = names.insert(&member.name, i) {
                return Err(invalid(
                    format!("members[{i}].name"),
                    format!("{:?} is also the name of members[{first}]", member.name),
                ));
            }
            if let Some(first) = agents.insert(member.agent.to_string(), i) {
                return Err(invalid(
                    format!("members[{i}].agent"),
                    format!("{} is also the agent of members[{first}]", member.agent),
                ));
            }
            if let Some(url) = &member.client_url {
                if let Err(reason) = check_client_url(url) {
                    return Err(invalid(format!("members[{i}].client_url"), reason.0));
                }
                if let Some(first) = clients.insert(url, i) {
                    return Err(invalid(
                        format!("members[{i}].client_url"),
                        format!("{url} is also the client URL of members[{first}]"),
                    ));
                }
            }
        }
        if let Some(local) = &self.local {
            for (field, value) in [("local.dir", &local.dir), ("local.binaries", &local.binaries)] {
                if !value.is_absolute() {
                    return Err(invalid(
                        field.into(),
                        format!("{} must be an absolute path", value.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file as steward writes it: a comment line, then the TOML.
    ///
    /// # Errors
    /// [`ClusterFileError::Encode`] (only on a bug: every field encodes).
    pub fn to_toml(&self, path: &Path) -> Result<String, ClusterFileError> {
        let body = toml::to_string_pretty(self).map_err(|source| ClusterFileError::Encode {
            path: path.to_owned(),
            source,
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Validates the description and writes it to `path` atomically (a temp
    /// file in the same directory, fsynced, renamed, the directory fsynced),
    /// so a reader never sees half a file.
    ///
    /// # Errors
    /// [`ClusterFileError::Invalid`] for a description that would not load
    /// again, or [`ClusterFileError::Write`].
    pub fn write_atomic(&self, path: &Path) -> Result<(), ClusterFileError> {
        self.validate(path)?;
        let text = self.to_toml(path)?;
        write_atomic(path, text.as_bytes())?;
        Ok(())
    }
}

/// An etcd member name: non-empty, no whitespace, and none of the characters
/// that separate entries of `--initial-cluster` (`=` and `,`).
fn check_member_name(name: &str) -> Result<(), Unacceptable> {
    if name.is_empty() {
        return Err(Unacceptable("is empty".into()));
    }
    if name.chars().any(|c| c.is_whitespace() || c == '=' || c == ',') {
        return Err(Unacceptable(format!(
            "{name:?} must not contain whitespace, '=' or ','"
        )));
    }
    Ok(())
}

/// An etcd client URL: `http://` or `https://`, a host, nothing after the
/// authority.
fn check_client_url(url: &str) -> Result<(), Unacceptable> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Unacceptable(format!("{url:?} is not a URL like http://host:port ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(Unacceptable(format!("{url:?} must start with http:// or https://"))),
    }
    let Some(authority) = uri.authority() else {
        return Err(Unacceptable(format!("{url:?} has no host")));
    };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(Unacceptable(format!("{url:?} must be only scheme://host:port")));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(Unacceptable(format!("{url:?} must not have a path or query")));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory,
/// fsynced, renamed over `path`, and the directory fsynced so the rename
/// survives a crash. The file is readable by everyone (0644): it holds no
/// secrets, only addresses and paths.
///
/// # Errors
/// [`WriteError`] naming the step and the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let fail = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| WriteError { action, path, source }
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(fail("create a temp file in", dir))?;
    temp.write_all(bytes).map_err(fail("write", temp.path()))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(fail("set the mode of", temp.path()))?;
    temp.as_file().sync_all().map_err(fail("fsync", temp.path()))?;
    temp.persist(path).map_err(|e| WriteError {
        action: "rename a temp file onto",
        path: path.to_owned(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync the directory", dir))
}

/// The members a cluster-wide command works on, from a cluster file or from
/// a list of agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// Where the list came from.
    pub source: TargetSource,
    /// The cluster's label, when the file has one.
    pub name: Option<String>,
    /// How to reach etcd (defaults for `--agents`).
    pub etcd: EtcdSettings,
    /// The file's `[agent_tls]`, its paths resolved.
    pub agent_tls: Option<crate::engine::connect::agent::AgentTlsFiles>,
    /// The members, in the order given.
    pub members: Vec<TargetMember>,
}

/// Where a [`ClusterTarget`] came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    /// `--cluster FILE` (or `STEWARD_CLUSTER`).
    File(PathBuf),
    /// `--agents ADDR,...` (or `STEWARD_AGENTS`).
    Agents,
}

impl fmt::Display for TargetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "cluster file {}", path.display()),
            Self::Agents => f.write_str("--agents"),
        }
    }
}

/// One member of a [`ClusterTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMember {
    /// The member name the file expects the agent to report; `None` with
    /// `--agents` (then whatever the agent reports).
    pub name: Option<String>,
    /// The agent's address.
    pub agent: AgentAddress,
    /// The client URL to use; `None` means the agent's reported one.
    pub client_url: Option<String>,
}

/// Why the command line and environment do not name one cluster.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Neither flag nor variable is given.
    #[error(
        "no cluster given: pass --cluster FILE or --agents ADDR,ADDR,... (or set STEWARD_CLUSTER or STEWARD_AGENTS)"
    )]
    Missing,
    /// Both variables are set and no flag decides between them.
    #[error("STEWARD_CLUSTER and STEWARD_AGENTS are both set: unset one, or choose with --cluster or --agents")]
    Ambiguous,
    /// An address in `STEWARD_AGENTS` does not parse.
    #[error("STEWARD_AGENTS: {value:?} is not an agent address")]
    AgentVariable {
        /// The offending element.
        value: String,
        /// Why.
        #[source]
        source: AddressError,
    },
    /// The agent list is empty or names an agent twice.
    #[error("{origin} {reason}")]
    Agents {
        /// `--agents` or `STEWARD_AGENTS`.
        origin: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The cluster file cannot be used.
    #[error(transparent)]
    File(#[from] ClusterFileError),
}

impl TargetError {
    /// True for the errors that are about how steward was invoked (exit
    /// code 2) rather than about the cluster.
    #[must_use]
    pub const fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::Ambiguous | Self::AgentVariable { .. } | Self::Agents { .. }
        )
    }
}

impl ClusterTarget {
    pub fn resolve(
        cluster: Option<&Path>,
        agents: Option<&[AgentAddress]>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TargetError> {
        if let Some(path) = cluster {
            return Ok(Self::from_file(path, ClusterFile::load(path)?));
        }
        if let Some(agents) = agents {
            return Self::from_agents("--agents", agents);
        }
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        match (set("STEWARD_CLUSTER"), set("STEWARD_AGENTS")) {
            (Some(_), Some(_)) => Err(TargetError::Ambiguous),
            (Some(path), None) => {
                let path = PathBuf::from(path);
                Ok(Self::from_file(&path, ClusterFile::load(&path)?))
            }
            (None, Some(list)) => {
                let agents = list
                    .split(',')
                    .map(|value| {
                        value.parse().map_err(|source| TargetError::AgentVariable {
                            value: value.to_owned(),
                            source,
                        })
                    })
                    .collect::<Result<Vec<AgentAddress>, _>>()?;
                Self::from_agents("STEWARD_AGENTS", &agents)
            }
            (None, None) => Err(TargetError::Missing),
        }
    }

    /// The members of a loaded cluster file.
    #[must_use]
    pub fn from_file(path: &Path, file: ClusterFile) -> Self {
        Self {
            source: TargetSource::File(path.to_owned()),
            name: file.name,
            etcd: file.etcd,
            agent_tls: file
                .agent_tls
                .map(|tls| tls.relative_to(path.parent().unwrap_or_else(|| Path::new(".")))),
            members: file
                .members
                .into_iter()
                .map(|m| TargetMember {
                    name: Some(m.name),
                    agent: m.agent,
                    client_url: m.client_url,
                })
                .collect(),
        }
    }

    /// How to reach this cluster, starting from `base`: what `base` already
    /// chose (the command line's flags) wins; where it chose nothing, the
    /// cluster file's `[agent_tls]`, `[etcd]` TLS files and etcd user
    /// apply. Each cluster of a fleet gets its own connector this way.
    ///
    /// # Errors
    /// A TLS or password file cannot be read, or the files do not go
    /// together.
    pub fn connector(&self, base: &Connector) -> Result<Connector, Error> {
        let mut connector = base.clone();
        if !connector.agent_uses_tls() && self.agent_tls.is_some() {
            connector = connector.with_agent_tls(self.agent_tls.as_ref())?;
        }
        if let Some(dir) = self.file_dir() {
            if !connector.etcd_uses_tls() {
                let files = self.etcd.tls_files(&dir);
                if !files.is_empty() {
                    connector = connector.with_etcd_tls(Some(&files))?;
                }
            }
            if !connector.has_credentials() {
                connector = connector.with_credentials(self.etcd.credentials(&dir)?);
            }
        }
        Ok(connector)
    }

    /// The directory of the cluster file, when the target came from one.
    #[must_use]
    pub fn file_dir(&self) -> Option<PathBuf> {
        match &self.source {
            TargetSource::File(path) => Some(path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)),
            TargetSource::Agents => None,
        }
    }

    /// Members known only by their agents; `origin` names the flag or
    /// variable for errors.
    ///
    /// # Errors
    /// [`TargetError::Agents`] when the list is empty or names an agent
    /// twice.
    pub fn from_agents(origin: &'static str, agents: &[AgentAddress]) -> Result<Self, TargetError> {
        let invalid = |reason: String| TargetError::Agents { origin, reason };
        if agents.is_empty() {
            return Err(invalid("must list at least one agent".into()));
        }
        for (i, agent) in agents.iter().enumerate() {
            if agents[..i].contains(agent) {
                return Err(invalid(format!("lists {agent} twice")));
            }
        }
        Ok(Self {
            source: TargetSource::Agents,
            name: None,
            etcd: EtcdSettings::default(),
            agent_tls: None,
            members: agents
                .iter()
                .map(|agent| TargetMember {
                    name: None,
                    agent: agent.clone(),
                    client_url: None,
                })
                .collect(),
        })
    }
}

/// serde for [`AgentAddress`] as its `host:port` text, parsed with its own
/// rules so the file accepts exactly what `--agent` accepts.
mod address_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::engine::connect::agent::AgentAddress;

    pub fn serialize<S: Serializer>(address: &AgentAddress, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(address)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AgentAddress, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# a hand-written description
name = "prod-east"

[[members]]
name = "infra1"
agent = "10.0.0.1:7400"
client_url = "https://10.0.0.1:2379"

[[members]]
name = "infra2"
agent = "http://10.0.0.2:7400"
"#;

    fn parse(text: &str) -> Result<ClusterFile, ClusterFileError> {
        ClusterFile::parse(Path::new("/etc/steward/cluster.toml"), text)
    }

    fn error(text: &str) -> String {
        crate::engine::error::chain(&parse(text).unwrap_err())
    }

    #[test]
    fn a_hand_written_file_parses() {
        let file = parse(EXAMPLE).unwrap();
        assert_eq!(file.name.as_deref(), Some("prod-east"));
        assert_eq!(file.members.len(), 2);
        assert_eq!(file.members[0].client_url.as_deref(), Some("https://10.0.0.1:2379"));
        assert_eq!(file.members[1].agent.to_string(), "10.0.0.2:7400");
        assert_eq!(file.members[1].client_url, None);
        assert_eq!(file.local, None);
        assert!(file.etcd.is_default());
    }

    #[test]
    fn what_is_written_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut file = parse(EXAMPLE).unwrap();
        file.local = Some(LocalSection {
            dir: dir.path().to_owned(),
            binaries: PathBuf::from("/root/.cache/steward/etcd"),
        });
        file.write_atomic(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# steward cluster description"), "{text}");
        assert!(text.contains("[[members]]"), "{text}");
        assert!(text.contains("[local]"), "{text}");
        assert!(!text.contains("[etcd]"), "an empty [etcd] table is left out: {text}");
        assert_eq!(ClusterFile::load(&path).unwrap(), file);
        // No temp file is left next to it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn unknown_fields_are_refused_with_file_and_field() {
        let text = error("[[members]]\nname = \"a\"\nagent = \"h:1\"\nclient = \"http://h:2\"\n");
        assert!(text.contains("/etc/steward/cluster.toml is malformed"), "{text}");
        assert!(text.contains("client"), "{text}");
        let text = error("nmae = \"x\"\n[[members]]\nname = \"a\"\nagent = \"h:1\"\n");
        assert!(text.contains("nmae"), "{text}");
        // The [etcd] table takes the TLS files, and nothing else.
        let text = error("[etcd]\ncafile = \"/ca.pem\"\n[[members]]\nname = \"a\"\nagent = \"h:1\"\n");
        assert!(text.contains("cafile"), "{text}");
        let file =
            parse("[etcd]\ncacert = \"ca.pem\"\ncert = \"/c.pem\"\n[[members]]\nname = \"a\"\nagent = \"h:1\"\n")
                .unwrap();
        let files = file.etcd.tls_files(Path::new("/etc/steward"));
        assert_eq!(files.cacert.as_deref(), Some(Path::new("/etc/steward/ca.pem")));
        assert_eq!(files.cert.as_deref(), Some(Path::new("/c.pem")));
        assert!(parse("[etcd]\n[[members]]\nname = \"a\"\nagent = \"h:1\"\n").is_ok());
    }

    #[test]
    fn agent_addresses_follow_the_agent_flag_rules() {
        let text = error("[[members]]\nname = \"a\"\nagent = \"10.0.0.1\"\n");
        assert!(text.contains("has no port"), "{text}");
        assert!(text.contains("agent"), "{text}");
        let text = error("[[members]]\nname = \"a\"\nagent = \"unix://h:1\"\n");
        assert!(text.contains("scheme"), "{text}");
    }

    #[test]
    fn members_must_exist_and_be_unique() {
        assert!(error("name = \"x\"\nmembers = []\n").contains("members must list at least one member"));
        assert!(error("name = \"x\"\n").contains("members"));
        let text = error("[[members]]\nname = \"a\"\nagent = \"h:1\"\n[[members]]\nname = \"a\"\nagent = \"h:2\"\n");
        assert!(
            text.ends_with("members[1].name \"a\" is also the name of members[0]"),
            "{text}"
        );
        let text =
            error("[[members]]\nname = \"a\"\nagent = \"h:1\"\n[[members]]\nname = \"b\"\nagent = \"http://h:1\"\n");
        assert!(
            text.contains("members[1].agent h:1 is also the agent of members[0]"),
            "{text}"
        );
        let text = error(
            "[[members]]\nname = \"a\"\nagent = \"h:1\"\nclient_url = \"http://h:9\"\n\
             [[members]]\nname = \"b\"\nagent = \"h:2\"\nclient_url = \"http://h:9\"\n",
        );
        assert!(text.contains("members[1].client_url"), "{text}");
    }

    #[test]
    fn names_and_urls_are_checked() {
        let text = error("[[members]]\nname = \"a=b\"\nagent = \"h:1\"\n");
        assert!(text.contains("members[0].name"), "{text}");
        assert!(error("[[members]]\nname = \"\"\nagent = \"h:1\"\n").contains("members[0].name is empty"));
        for url in ["h:2379", "ftp://h:2379", "http://h:2379/v3", "http://u@h:2379"] {
            let text = error(&format!(
                "[[members]]\nname = \"a\"\nagent = \"h:1\"\nclient_url = \"{url}\"\n"
            ));
            assert!(text.contains("members[0].client_url"), "{url}: {text}");
        }
        let text = error("name = \" \"\n[[members]]\nname = \"a\"\nagent = \"h:1\"\n");
        assert!(text.contains(": name is empty"), "{text}");
    }

    #[test]
    fn local_paths_must_be_absolute() {
        let text = error("[[members]]\nname = \"a\"\nagent = \"h:1\"\n[local]\ndir = \"demo\"\nbinaries = \"/b\"\n");
        assert!(text.contains("local.dir demo must be an absolute path"), "{text}");
        let text = error("[[members]]\nname = \"a\"\nagent = \"h:1\"\n[local]\ndir = \"/demo\"\n");
        assert!(text.contains("binaries"), "{text}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = ClusterFile::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
        assert!(
            crate::engine::error::chain(&error).starts_with("cannot read the cluster file /nonexistent/cluster.toml: "),
            "{error}"
        );
    }

    fn target_of(
        cluster: Option<&Path>,
        agents: Option<&[&str]>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClusterTarget, TargetError> {
        let agents: Option<Vec<AgentAddress>> = agents.map(|list| list.iter().map(|a| a.parse().unwrap()).collect());
        ClusterTarget::resolve(cluster, agents.as_deref(), env)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn targets_come_from_a_file_or_from_agents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let target = target_of(Some(&path), None, no_env).unwrap();
        assert_eq!(target.source.to_string(), format!("cluster file {}", path.display()));
        assert_eq!(target.name.as_deref(), Some("prod-east"));
        assert_eq!(target.members[0].name.as_deref(), Some("infra1"));
        assert_eq!(target.members[1].client_url, None);

        let target = target_of(None, Some(&["h:1", "h:2"]), no_env).unwrap();
        assert_eq!(target.source, TargetSource::Agents);
        assert_eq!(target.members.len(), 2);
        assert!(target.members.iter().all(|m| m.name.is_none()));

        let error = target_of(None, Some(&["h:1", "http://h:1"]), no_env).unwrap_err();
        assert_eq!(error.to_string(), "--agents lists h:1 twice");
        assert!(error.is_usage());
        let error = target_of(None, Some(&[]), no_env).unwrap_err();
        assert_eq!(error.to_string(), "--agents must list at least one agent");
    }

    #[test]
    fn flags_win_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let path_text = path.display().to_string();
        let both = |name: &str| match name {
            "STEWARD_CLUSTER" => Some(path_text.clone()),
            "STEWARD_AGENTS" => Some("h:7,h:8".to_owned()),
            _ => None,
        };
        let target = target_of(None, Some(&["h:1"]), both).unwrap();
        assert_eq!(target.members[0].agent.to_string(), "h:1");
        let target = target_of(Some(&path), None, both).unwrap();
        assert_eq!(target.members.len(), 2);
        let error = target_of(None, None, both).unwrap_err();
        assert!(matches!(error, TargetError::Ambiguous), "{error}");
        assert!(error.is_usage());
    }

    #[test]
    fn the_environment_is_the_fallback() {
        let agents = |name: &str| (name == "STEWARD_AGENTS").then(|| "h:7, h:8".to_owned());
        let target = target_of(None, None, agents).unwrap();
        assert_eq!(target.members[1].agent.to_string(), "h:8");
        let bad = |name: &str| (name == "STEWARD_AGENTS").then(|| "h:7,h".to_owned());
        let error = target_of(None, None, bad).unwrap_err();
        assert!(
            crate::engine::error::chain(&error).starts_with("STEWARD_AGENTS: \"h\" is not an agent address: "),
            "{error}"
        );
        let missing = |name: &str| (name == "STEWARD_CLUSTER").then(|| "/nonexistent/c.toml".to_owned());
        let error = target_of(None, None, missing).unwrap_err();
        assert!(!error.is_usage());
        assert!(error.to_string().contains("/nonexistent/c.toml"), "{error}");
        let empty = |_: &str| Some(" ".to_owned());
        let error = target_of(None, None, empty).unwrap_err();
        assert!(matches!(error, TargetError::Missing), "{error}");
    }

    #[test]
    fn the_etcd_user_reads_its_password_from_a_file_next_to_the_cluster_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.password"), "s3cret\n").unwrap();
        let settings = |user: Option<&str>, file: Option<&str>| EtcdSettings {
            user: user.map(str::to_owned),
            password_file: file.map(PathBuf::from),
            ..EtcdSettings::default()
        };
        let credentials = settings(Some("root"), Some("root.password"))
            .credentials(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(credentials.user, "root");
        assert_eq!(settings(None, None).credentials(dir.path()).unwrap(), None);
        let error = settings(Some("root"), None).credentials(dir.path()).unwrap_err();
        assert_eq!(error.to_string(), "[etcd] user needs password_file");
        let error = settings(None, Some("root.password"))
            .credentials(dir.path())
            .unwrap_err();
        assert_eq!(error.to_string(), "[etcd] password_file needs user");
        let error = settings(Some("root"), Some("missing"))
            .credentials(dir.path())
            .unwrap_err();
        assert!(error.to_string().starts_with("cannot read "), "{error}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let error = settings(Some("root"), Some("empty"))
            .credentials(dir.path())
            .unwrap_err();
        assert!(error.to_string().contains("the first line is empty"), "{error}");
    }
}
