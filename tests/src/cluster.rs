//! Real etcd clusters on loopback, every member owned by its own
//! `steward-agent` process.
//!
//! Builder -> [`Cluster`]: one temp dir per cluster holding each member's
//! agent config, state dir, data dir and logs; ports from the lease
//! allocator; readiness by polling the agents' real GetStatus with one
//! generous deadline and an error that says where the logs are. Dropping a
//! cluster kills every process whose command line names its dir (agents and
//! etcd alike), so no test leaves processes behind; a cluster dropped during
//! a panic keeps its dir for debugging and prints where it is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steward_coordinator::engine::connect::Connector;
use steward_coordinator::local::process::{ProcessId, mentioning};
use steward_proto::v1 as pb;
use steward_proto::v1::agent_client::AgentClient;
use steward_proto::v1::binaries_client::BinariesClient;
use steward_proto::v1::snapshots_client::SnapshotsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::pki::{EtcdPki, Pki};
use steward_coordinator::engine::connect::agent::AgentTlsFiles;
use steward_proto::Role;

use crate::binaries::{Release, binaries_dir};
use crate::ports::{PortLease, lease};

/// Cluster dirs are `<tmp>/steward-cluster-XXXXXX`.
const CLUSTER_PREFIX: &str = "steward-cluster-";
/// Names the test process that owns a cluster ("pid start-ticks").
const OWNER_FILE: &str = "owner";

/// How long a cluster may take to become healthy.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(200);

/// Builds a cluster.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    members: usize,
    release: Release,
    supervision: Vec<(String, String)>,
    extra_flags: Vec<String>,
    member_tls: Vec<(String, String)>,
    retain: usize,
    mutual_tls: bool,
    etcd_tls: bool,
    member_auth: Option<(String, String)>,
    state_on_tmpfs: Vec<(usize, String)>,
    metrics: Option<bool>,
    limits: Vec<(String, String)>,
}

impl ClusterBuilder {
    /// `members` members running `release`.
    #[must_use]
    pub fn new(members: usize, release: Release) -> Self {
        Self {
            members,
            release,
            supervision: vec![
                ("stop_grace".into(), "\"10s\"".into()),
                ("activate_timeout".into(), "\"60s\"".into()),
            ],
            extra_flags: Vec::new(),
            member_tls: Vec::new(),
            retain: 5,
            mutual_tls: true,
            etcd_tls: false,
            member_auth: None,
            state_on_tmpfs: Vec::new(),
            metrics: None,
            limits: Vec::new(),
        }
    }

    /// Sets a `[limits]` key of every agent (value as TOML).
    #[must_use]
    pub fn limit(mut self, key: &str, toml_value: &str) -> Self {
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// Gives every agent a `[metrics]` listener on a port of its own
    /// ([`Member::metrics_addr`]), over HTTPS with the agent's certificate
    /// when `https`.
    #[must_use]
    pub const fn metrics(mut self, https: bool) -> Self {
        self.metrics = Some(https);
        self
    }

    /// Puts member `i`'s agent state dir on a tmpfs of `size` ("300m") of
    /// its own, so a scenario can fill it (see [`Cluster::state_mount`]).
    /// Needs root.
    #[must_use]
    pub fn state_dir_on_tmpfs(mut self, i: usize, size: &str) -> Self {
        self.state_on_tmpfs.push((i, size.to_owned()));
        self
    }

    /// Sets a `[supervision]` key of every agent (value as TOML).
    #[must_use]
    pub fn supervision(mut self, key: &str, toml_value: &str) -> Self {
        self.supervision.retain(|(k, _)| k != key);
        self.supervision.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// Adds an etcd flag to every member's `extra_flags`; `{member_dir}` in
    /// it becomes the member's own directory.
    #[must_use]
    pub fn extra_flag(mut self, flag: &str) -> Self {
        self.extra_flags.push(flag.to_owned());
        self
    }

    /// Sets a `[member.tls]` key of every agent (value as TOML).
    #[must_use]
    pub fn member_tls(mut self, key: &str, toml_value: &str) -> Self {
        self.member_tls.retain(|(k, _)| k != key);
        self.member_tls.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// The agents in plaintext development mode instead of the default:
    /// mutual TLS with certificates of a CA made for this cluster (see
    /// [`crate::pki`]), which the harness, the in-process coordinator and
    /// [`steward_command`] use as admin.
    #[must_use]
    pub const fn insecure(mut self) -> Self {
        self.mutual_tls = false;
        self
    }

    /// The members serve TLS on their client and peer URLs and require
    /// client certificates on both (`--client-cert-auth`,
    /// `--peer-client-cert-auth`), with certificates of a CA made for this
    /// cluster (see [`crate::pki::EtcdPki`]); the harness, the in-process
    /// coordinator and [`steward_command`] connect as its client.
    #[must_use]
    pub const fn etcd_tls(mut self) -> Self {
        self.etcd_tls = true;
        self
    }

    /// The agents call their members as `user` with `password` (given in a
    /// password file), for clusters where the test enables auth.
    #[must_use]
    pub fn member_auth(mut self, user: &str, password: &str) -> Self {
        self.member_auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Sets the agents' snapshot retention count.
    #[must_use]
    pub const fn retain_snapshots(mut self, retain: usize) -> Self {
        self.retain = retain;
        self
    }

    /// Starts the agents (which start etcd) and waits until the cluster has
    /// a leader that every member agrees on.
    pub async fn start(self) -> Cluster {
        show_engine_logs();
        sweep_orphaned_clusters();
        let dir = tempfile::Builder::new()
            .prefix(CLUSTER_PREFIX)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a cluster dir: {e}"));
        std::fs::write(dir.path().join(OWNER_FILE), own_identity())
            .unwrap_or_else(|e| panic!("cannot write the owner file: {e}"));
        let import_dir = dir.path().join("import");
        std::fs::create_dir(&import_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", import_dir.display()));
        let token = dir
            .path()
            .file_name()
            .map_or_else(|| "steward-test".to_owned(), |n| n.to_string_lossy().into_owned());

        let scheme = if self.etcd_tls { "https" } else { "http" };
        let mut leases = Vec::new();
        let mut members = Vec::new();
        for i in 0..self.members {
            let client = lease();
            let peer = lease();
            let agent = lease();
            let metrics = self.metrics.map(|_| lease());
            let name = format!("m{i}");
            let member_dir = dir.path().join(&name);
            members.push(Member {
                client_url: format!("{scheme}://127.0.0.1:{}", client.port()),
                peer_url: format!("{scheme}://127.0.0.1:{}", peer.port()),
                agent_addr: format!("127.0.0.1:{}", agent.port()),
                metrics_addr: metrics.as_ref().map(|m| format!("127.0.0.1:{}", m.port())),
                config_path: member_dir.join("agent.toml"),
                state_dir: member_dir.join("state"),
                data_dir: member_dir.join("data"),
                log_path: member_dir.join("agent.log"),
                dir: member_dir,
                name,
                process: None,
            });
            leases.extend([client, peer, agent]);
            leases.extend(metrics);
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let pki = self.mutual_tls.then(|| {
            let pki = Pki::create(&dir.path().join("pki"));
            for member in &members {
                pki.issue(Role::Agent, &member.name, &["127.0.0.1".to_owned()]);
            }
            let admin = pki.client("admin");
            *STEWARD_IDENTITY
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(admin);
            pki
        });
        let etcd_pki = self.etcd_tls.then(|| {
            let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
            let pki = EtcdPki::create(&dir.path().join("etcd-pki"), &names);
            *ETCD_IDENTITY.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pki.clone());
            pki
        });
        for member in &members {
            std::fs::create_dir_all(&member.dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", member.dir.display()));
            let config = self.agent_config(
                member,
                &initial_cluster,
                &token,
                &import_dir,
                pki.as_ref(),
                etcd_pki.as_ref(),
            );
            std::fs::write(&member.config_path, config)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", member.config_path.display()));
        }
        let mounts = self
            .state_on_tmpfs
            .iter()
            .map(|(i, size)| (*i, crate::mounts::Tmpfs::mount(&members[*i].state_dir, size, false)))
            .collect();
        // How the in-process engine reaches this cluster: as its admin, and
        // as its etcd client when etcd serves TLS.
        let connector = Connector::default()
            .with_agent_tls(pki.as_ref().map(|p| p.client("admin")).as_ref())
            .unwrap_or_else(|e| panic!("the test client identity: {e}"))
            .with_etcd_tls(etcd_pki.as_ref().map(EtcdPki::client).as_ref())
            .unwrap_or_else(|e| panic!("the test etcd client identity: {e}"));
        let mut cluster = Cluster {
            connector,
            dir: Some(dir),
            pki,
            etcd_pki,
            members,
            release: self.release,
            mounts,
            _leases: leases,
        };
        for i in 0..cluster.members.len() {
            cluster.start_agent(i);
        }
        cluster.wait_ready(READY_TIMEOUT).await;
        cluster
    }

    fn agent_config(
        &self,
        member: &Member,
        initial_cluster: &str,
        token: &str,
        import_dir: &Path,
        pki: Option<&Pki>,
        etcd_pki: Option<&EtcdPki>,
    ) -> String {
        let mut supervision = String::new();
        for (key, value) in &self.supervision {
            let _ = writeln!(supervision, "{key} = {value}");
        }
        let member_dir = member.dir.display().to_string();
        let extra: Vec<String> = self
            .extra_flags
            .iter()
            .map(|f| format!("{:?}", f.replace("{member_dir}", &member_dir)))
            .collect();
        let mut member_tls = self.member_tls.clone();
        if let Some(etcd) = etcd_pki {
            let path = |name: String| format!("{:?}", etcd.dir.join(name).display().to_string());
            for (key, value) in [
                ("cert_file", path(format!("{}.crt", member.name))),
                ("key_file", path(format!("{}.key", member.name))),
                ("trusted_ca_file", path("ca.crt".into())),
                ("client_cert_auth", "true".into()),
                ("peer_cert_file", path(format!("{}.crt", member.name))),
                ("peer_key_file", path(format!("{}.key", member.name))),
                ("peer_trusted_ca_file", path("ca.crt".into())),
                ("peer_client_cert_auth", "true".into()),
            ] {
                member_tls.retain(|(k, _)| k != key);
                member_tls.push((key.to_owned(), value));
            }
        }
        let mut tls = String::new();
        if !self.limits.is_empty() {
            tls.push_str("\n[limits]\n");
            for (key, value) in &self.limits {
                let _ = writeln!(tls, "{key} = {value}");
            }
        }
        if let (Some(https), Some(address)) = (self.metrics, &member.metrics_addr) {
            let _ = write!(tls, "\n[metrics]\nlisten = {address:?}\ntls = {https}\n");
        }
        if let Some((user, password)) = &self.member_auth {
            let file = member.dir.join("etcd-password");
            std::fs::write(&file, format!("{password}\n")).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
            let _ = write!(
                tls,
                "\n[member.auth]\nuser = {user:?}\npassword_file = {:?}\n",
                file.display().to_string()
            );
        }
        if !member_tls.is_empty() {
            tls.push_str("\n[member.tls]\n");
            for (key, value) in &member_tls {
                let _ = writeln!(tls, "{key} = {value}");
            }
        }
        let config = format!(
            r#"# Written by the steward test harness.
listen = "{agent}"
state_dir = "{state}"
import_dirs = ["{binaries}", "{import}"]
initial_binary = "{initial}"
{access}

[supervision]
{supervision}
[snapshots]
retain = {retain}

[member]
name = "{name}"
data_dir = "{data}"
listen_client_urls = ["{client}"]
advertise_client_urls = ["{client}"]
listen_peer_urls = ["{peer}"]
initial_advertise_peer_urls = ["{peer}"]
initial_cluster = "{initial_cluster}"
initial_cluster_state = "new"
initial_cluster_token = "{token}"
extra_flags = [{extra}]
"#,
            agent = member.agent_addr,
            state = member.state_dir.display(),
            binaries = binaries_dir().display(),
            import = import_dir.display(),
            initial = self.release.etcd().display(),
            access = match pki {
                Some(pki) => format!(
                    "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
                    pki.dir.join(format!("{}.crt", member.name)).display(),
                    pki.dir.join(format!("{}.key", member.name)).display(),
                    pki.ca_cert().display()
                ),
                None => "insecure = true\n".to_owned(),
            },
            retain = self.retain,
            name = member.name,
            data = member.data_dir.display(),
            client = member.client_url,
            peer = member.peer_url,
            extra = extra.join(", "),
        );
        config + &tls
    }
}

/// One member and its agent.
#[derive(Debug)]
pub struct Member {
    /// etcd's `--name`.
    pub name: String,
    /// The member's dir inside the cluster dir.
    pub dir: PathBuf,
    /// The agent's config file.
    pub config_path: PathBuf,
    /// The agent's state dir.
    pub state_dir: PathBuf,
    /// etcd's data dir.
    pub data_dir: PathBuf,
    /// The agent's stderr.
    pub log_path: PathBuf,
    /// The agent's gRPC address.
    pub agent_addr: String,
    /// The agent's metrics listener, when the cluster has them.
    pub metrics_addr: Option<String>,
    /// etcd's client URL.
    pub client_url: String,
    /// etcd's peer URL.
    pub peer_url: String,
    process: Option<Child>,
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    /// How the engine reaches this cluster's agents and members.
    connector: Connector,
    /// The certificates, when the agents serve mutual TLS.
    pub pki: Option<Pki>,
    /// etcd's certificates, when the members serve TLS.
    pub etcd_pki: Option<EtcdPki>,
    /// The members, in order.
    pub members: Vec<Member>,
    release: Release,
    /// State dirs on file systems of their own, by member.
    mounts: Vec<(usize, crate::mounts::Tmpfs)>,
    _leases: Vec<PortLease>,
}

/// The etcd client identity of the last cluster started with etcd TLS.
static ETCD_IDENTITY: std::sync::Mutex<Option<EtcdPki>> = std::sync::Mutex::new(None);

/// Options for an etcd-client connection to the clusters of this test: as
/// the etcd client of a cluster started with etcd TLS, plain otherwise.
#[must_use]
pub fn etcd_options() -> etcd_client::ConnectOptions {
    ETCD_IDENTITY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map_or_else(etcd_client::ConnectOptions::new, EtcdPki::connect_options)
}

/// The in-process engine's warnings, and the cluster lock's keepalive at
/// debug, on the test's output (shown when a test fails): a lock lost
/// under a fault says why. `RUST_LOG` replaces the filter.
fn show_engine_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,steward_coordinator::engine::cluster::lock=debug")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The identity `steward` runs with in tests: the admin of the last
/// cluster started with mutual TLS.
static STEWARD_IDENTITY: std::sync::Mutex<Option<AgentTlsFiles>> = std::sync::Mutex::new(None);

/// `steward` as a test runs it: with the admin identity of the cluster this
/// test started (in `STEWARD_AGENT_CACERT/CERT/KEY`), if it started one
/// with mutual TLS.
#[must_use]
pub fn steward_command() -> Command {
    let mut command = Command::new(steward_binary());
    let identity = STEWARD_IDENTITY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(files) = identity {
        command
            .env("STEWARD_AGENT_CACERT", files.cacert)
            .env("STEWARD_AGENT_CERT", files.cert)
            .env("STEWARD_AGENT_KEY", files.key);
    }
    let etcd = ETCD_IDENTITY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(etcd) = etcd {
        let files = etcd.client();
        for (name, value) in [
            ("ETCDCTL_CACERT", files.cacert),
            ("ETCDCTL_CERT", files.cert),
            ("ETCDCTL_KEY", files.key),
        ] {
            if let Some(value) = value {
                command.env(name, value);
            }
        }
    }
    command
}

/// Runs `steward <args>` as a test runs it (see [`steward_command`]) and
/// waits for it.
///
/// # Panics
/// When it cannot be started.
#[must_use]
pub fn steward(args: &[&str]) -> std::process::Output {
    steward_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run steward {args:?}: {e}"))
}

/// The JSON a successful `steward ... -w json` printed.
///
/// # Panics
/// When it did not exit 0 (stderr is shown) or printed no JSON.
#[must_use]
pub fn json_of(output: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON on stdout: {e}"))
}

/// The steward-agent binary under test: `STEWARD_AGENT_BIN`, or next to the
/// test executable's `deps/` dir in cargo's target dir.
#[must_use]
pub fn agent_binary() -> PathBuf {
    built_binary("STEWARD_AGENT_BIN", "steward-agent")
}

/// The `steward` binary under test: `STEWARD_BIN`, or next to the test
/// executable's `deps/` dir in cargo's target dir.
#[must_use]
pub fn steward_binary() -> PathBuf {
    built_binary("STEWARD_BIN", "steward")
}

fn built_binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let binary = target.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (the README's test command does)",
        binary.display()
    );
    binary
}

impl Cluster {
    /// How the engine reaches this cluster (its admin identity, its etcd
    /// client TLS when etcd serves TLS).
    #[must_use]
    pub const fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Every agent's address, comma-separated, as `steward --agents` takes
    /// them.
    #[must_use]
    pub fn agents_arg(&self) -> String {
        self.members
            .iter()
            .map(|m| m.agent_addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every agent's address, for the in-process coordinator.
    ///
    /// # Panics
    /// When an address does not parse (the harness made them).
    #[must_use]
    pub fn agent_addresses(&self) -> Vec<steward_coordinator::engine::connect::agent::AgentAddress> {
        self.members
            .iter()
            .map(|m| m.agent_addr.parse().expect("the harness's agent address"))
            .collect()
    }

    /// The cluster's dir (kept when a test panics).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), tempfile::TempDir::path)
    }

    /// A dir every agent may import binaries from (for fakes and copies).
    #[must_use]
    pub fn import_dir(&self) -> PathBuf {
        self.dir().join("import")
    }

    /// The release the cluster started with.
    #[must_use]
    pub const fn release(&self) -> &Release {
        &self.release
    }

    /// Client URLs of the given members.
    #[must_use]
    pub fn client_urls(&self, members: &[usize]) -> Vec<String> {
        members.iter().map(|i| self.members[*i].client_url.clone()).collect()
    }

    /// Client URLs of all members.
    #[must_use]
    pub fn all_client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Starts member `i`'s agent process (again).
    pub fn start_agent(&mut self, i: usize) {
        let member = &mut self.members[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", member.log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let child = Command::new(agent_binary())
            .arg("--config")
            .arg(&member.config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start steward-agent: {e}"));
        member.process = Some(child);
    }

    /// Kills member `i`'s agent with SIGKILL (etcd keeps running).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i`'s agent with SIGTERM (as systemd does) and returns
    /// how long it took to exit, or `None` if it was still running after
    /// `limit` (then it is killed).
    pub async fn terminate_agent(&mut self, i: usize, limit: Duration) -> Option<Duration> {
        let mut child = self.members[i].process.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let began = Instant::now();
        while began.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Replaces member `i`'s staged etcd of `version` with other content,
    /// the way an attacker or a careless operator would (a running
    /// executable cannot be written in place: the file is swapped).
    pub fn tamper_with_staged_binary(&self, i: usize, version: &str) {
        let staged = self.members[i].state_dir.join("binaries").join(version).join("etcd");
        let mut bytes = std::fs::read(&staged).unwrap_or_else(|e| panic!("read {}: {e}", staged.display()));
        bytes.extend_from_slice(b"tampered");
        let swapped = staged.with_extension("swap");
        std::fs::write(&swapped, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", swapped.display()));
        std::fs::rename(&swapped, &staged).unwrap_or_else(|e| panic!("swap {}: {e}", staged.display()));
    }

    /// A client for member `i`'s Agent service, waiting up to the ready
    /// timeout for the agent to listen.
    pub async fn agent(&self, i: usize) -> AgentClient<Channel> {
        AgentClient::new(self.channel(i).await)
    }

    /// A client for member `i`'s Binaries service.
    pub async fn binaries(&self, i: usize) -> BinariesClient<Channel> {
        BinariesClient::new(self.channel(i).await)
    }

    /// A client for member `i`'s Snapshots service.
    pub async fn snapshots(&self, i: usize) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel(i).await)
    }

    /// The snapshots member `i`'s agent lists.
    pub async fn snapshot_list(&self, i: usize) -> Vec<pb::SnapshotInfo> {
        self.snapshots(i)
            .await
            .list_snapshots(pb::ListSnapshotsRequest {})
            .await
            .unwrap_or_else(|e| panic!("list m{i}'s snapshots: {e}"))
            .into_inner()
            .snapshots
    }

    /// One attempt at a channel to member `i`'s agent with `identity`
    /// (`None`: plaintext; over TLS the CA alone, or a client certificate).
    ///
    /// # Errors
    /// The transport's error.
    pub async fn channel_with(
        &self,
        i: usize,
        identity: Option<ChannelIdentity>,
    ) -> Result<Channel, tonic::transport::Error> {
        let address = &self.members[i].agent_addr;
        let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let url = |scheme: &str| {
            Channel::from_shared(format!("{scheme}://{address}")).unwrap_or_else(|e| panic!("bad agent address: {e}"))
        };
        let endpoint = match identity {
            None => url("http"),
            Some(ChannelIdentity::NoCertificate(ca)) => url("https").tls_config(
                ClientTlsConfig::new()
                    .domain_name("127.0.0.1")
                    .ca_certificate(Certificate::from_pem(read(&ca))),
            )?,
            Some(ChannelIdentity::Client(files)) => url("https").tls_config(
                ClientTlsConfig::new()
                    .domain_name("127.0.0.1")
                    .ca_certificate(Certificate::from_pem(read(&files.cacert)))
                    .identity(Identity::from_pem(read(&files.cert), read(&files.key))),
            )?,
        };
        endpoint.connect_timeout(Duration::from_secs(2)).connect().await
    }

    /// How the harness calls agents: as admin over mutual TLS, or in
    /// plaintext.
    fn own_identity(&self) -> Option<ChannelIdentity> {
        self.pki
            .as_ref()
            .map(|pki| ChannelIdentity::Client(pki.client("admin")))
    }

    /// A gRPC channel to member `i`'s agent.
    pub async fn channel(&self, i: usize) -> Channel {
        let url = self.members[i].agent_addr.clone();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.channel_with(i, self.own_identity()).await {
                Ok(channel) => return channel,
                // Refused while the agent starts up: try again.
                Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(error) => panic!("agent {} did not listen: {error}; {}", url, self.logs_hint()),
            }
        }
    }

    /// Imports the etcd server at `path` as `version` on member `i`'s agent
    /// (it must lie in an import dir), without a fencing token.
    ///
    /// # Panics
    /// When the agent refuses it.
    pub async fn import_etcd(&self, i: usize, path: &Path, version: &str) {
        self.binaries(i)
            .await
            .import_binary(pb::ImportBinaryRequest {
                path: path.display().to_string(),
                tool: pb::Tool::Etcd.into(),
                version: version.to_owned(),
                sha256: String::new(),
                fencing_token: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("import {} as {version} on member {i}: {s}", path.display()));
    }

    /// GetStatus of member `i`.
    pub async fn status(&self, i: usize) -> pb::GetStatusResponse {
        self.agent(i)
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap_or_else(|s| {
                panic!(
                    "GetStatus on {} failed: {s}; {}",
                    self.members[i].name,
                    self.logs_hint()
                )
            })
            .into_inner()
    }

    /// An etcd client connected to the given members.
    pub async fn etcd(&self, members: &[usize]) -> etcd_client::Client {
        let options = etcd_options()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        etcd_client::Client::connect(self.client_urls(members), Some(options))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to etcd: {e}; {}", self.logs_hint()))
    }

    /// Waits until every member answers Status, all agree on one leader,
    /// and a write through every member succeeds (quorum).
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.readiness().await {
                Ok(()) => return,
                Err(problem) => problem,
            };
            assert!(
                Instant::now() < deadline,
                "cluster not ready within {timeout:?}: {last}; {}",
                self.logs_hint()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn readiness(&self) -> Result<(), String> {
        let mut leaders = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            let Ok(channel) = self.channel_with(i, self.own_identity()).await else {
                return Err(format!("agent of {} not listening", member.name));
            };
            let status = AgentClient::new(channel)
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(|s| format!("GetStatus on {}: {s}", member.name))?
                .into_inner();
            let m = status.member.unwrap_or_default();
            if !m.reachable {
                return Err(format!("{} (agent {i}) not reachable: {}", member.name, m.error));
            }
            if m.leader_id == 0 {
                return Err(format!("{} has no leader", member.name));
            }
            leaders.push(m.leader_id);
        }
        leaders.dedup();
        if leaders.len() != 1 {
            return Err(format!("members disagree on the leader: {leaders:x?}"));
        }
        for i in 0..self.members.len() {
            let options = etcd_options()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(2));
            let mut client = etcd_client::Client::connect([self.members[i].client_url.as_str()], Some(options))
                .await
                .map_err(|e| e.to_string())?;
            client
                .put("steward-test/ready", self.members[i].name.as_str(), None)
                .await
                .map_err(|e| format!("write through {}: {e}", self.members[i].name))?;
        }
        Ok(())
    }

    /// Index of the member that is the leader now.
    pub async fn leader_index(&self) -> usize {
        let status = self.status(0).await.member.unwrap_or_default();
        for i in 0..self.members.len() {
            if self.status(i).await.member.unwrap_or_default().member_id == status.leader_id {
                return i;
            }
        }
        panic!("no member is the leader {:x}; {}", status.leader_id, self.logs_hint());
    }

    /// "logs in DIR" for failure messages.
    #[must_use]
    pub fn logs_hint(&self) -> String {
        format!(
            "agent logs in {}/m*/agent.log, etcd logs in {}/m*/state/logs/etcd.log",
            self.dir().display(),
            self.dir().display()
        )
    }

    /// Member `i`'s state dir mount, when the builder put it on a tmpfs.
    #[must_use]
    pub fn state_mount(&self, i: usize) -> Option<&crate::mounts::Tmpfs> {
        self.mounts.iter().find(|(m, _)| *m == i).map(|(_, mount)| mount)
    }

    /// The pid of member `i`'s agent process (from its command line, so
    /// it works from a synchronous event hook too).
    #[must_use]
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        crate::faults::pid_mentioning(&self.members[i].config_path)
    }

    /// Stops everything and removes the dir.
    pub fn cleanup(mut self) {
        self.kill_everything();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }

    fn kill_everything(&mut self) {
        for i in 0..self.members.len() {
            self.kill_agent(i);
        }
        let dir = self.dir().to_path_buf();
        kill_processes_mentioning(&dir);
        // Unmounted once nothing runs on them.
        self.mounts.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_everything();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("steward test cluster kept for debugging: {}", kept.display());
        }
    }
}

/// "pid start-ticks" of this process: a pid alone could be reused.
pub(crate) fn own_identity() -> String {
    let own = std::process::id();
    format!("{own} {}", start_ticks(own).unwrap_or(0))
}

fn start_ticks(pid: u32) -> Option<u64> {
    ProcessId::of(pid).map(|id| id.start_ticks)
}

/// True while the process named by an [`own_identity`] text runs (an
/// unreadable text counts as alive: nothing is torn down on a guess).
pub(crate) fn identity_alive(owner: &str) -> bool {
    let mut parts = owner.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(ticks))) = (parts.next(), parts.next()) else {
        return true;
    };
    u32::try_from(pid).ok().and_then(start_ticks) == Some(ticks)
}

/// Kills the processes of clusters whose test process died without
/// cleaning up (a test runner's SIGTERM or SIGKILL skips `Drop`). Their
/// dirs stay for debugging; only the owner file goes.
fn sweep_orphaned_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(CLUSTER_PREFIX) {
            continue;
        }
        let owner_file = entry.path().join(OWNER_FILE);
        let Ok(owner) = std::fs::read_to_string(&owner_file) else {
            continue;
        };
        if !identity_alive(&owner) {
            eprintln!(
                "cleaning up the processes of an orphaned test cluster in {}",
                entry.path().display()
            );
            kill_processes_mentioning(&entry.path());
            let _ = std::fs::remove_file(&owner_file);
        }
    }
}

/// SIGKILLs every process whose command line mentions `dir` and waits until
/// they are gone. Agents and etcd both carry the cluster dir in their
/// arguments (config path, data dir), so nothing escapes.
pub fn kill_processes_mentioning(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The same listing `steward local down` uses: whole path components,
        // zombies and this process's own lineage left out.
        let pids: Vec<i32> = mentioning(dir)
            .iter()
            .filter_map(|found| i32::try_from(found.id.pid).ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            eprintln!("processes still alive after SIGKILL: {pids:?}");
            return;
        }
        pause_between_kill_rounds();
    }
}

// Cleanup runs in Drop, which cannot await; the pause only lets the kernel
// finish killing before the next check.
#[allow(clippy::disallowed_methods)]
fn pause_between_kill_rounds() {
    std::thread::sleep(Duration::from_millis(50));
}

/// Who a test connects to an agent as, over TLS.
#[derive(Debug, Clone)]
pub enum ChannelIdentity {
    /// With these client files.
    Client(AgentTlsFiles),
    /// With this CA, and no client certificate.
    NoCertificate(PathBuf),
}
