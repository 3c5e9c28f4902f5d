//! A testbed of separate hosts on one machine: each member on its own host
//! with real systemd as PID 1 (see [`host`]), its own address on a private
//! bridge, and `steward-agent` installed by `deploy/install-agent` — the same
//! script the deploy guide tells operators to run — under the shipped unit.
//!
//! `steward` and the tests run in the machine's own namespaces and reach the
//! agents and members by the hosts' addresses, over mutual TLS for the
//! agents. A testbed is torn down completely (hosts, mounts, bridge, files)
//! when dropped, also when a test panics; one left behind by a killed test
//! process is swept by the next testbed's start.

pub mod host;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use host::Host;
use host::run_ok;

use crate::Release;
use crate::binaries::binaries_dir;
use crate::cluster::steward_binary;

/// Testbed dirs are `<tmp>/steward-hosts-*`.
const TESTBED_PREFIX: &str = "steward-hosts-";
/// Names the test process that owns a testbed ("pid start-ticks").
const OWNER_FILE: &str = "owner";
/// Names the testbed's bridge, for the sweeper.
const BRIDGE_FILE: &str = "bridge";
/// The hosts' addresses: 198.18.0.0/15 is reserved for network tests
/// (RFC 2544); each testbed takes one /24 of it.
const NETWORK_FIRST_OCTETS: [u8; 2] = [198, 18];
/// The agent's port on every host, as in the deploy guide.
pub const AGENT_PORT: u16 = 7400;
/// How long the cluster may take to become healthy after its hosts boot.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds a testbed.
#[derive(Debug, Clone)]
pub struct TestbedBuilder {
    hosts: usize,
    release: Release,
    more_releases: Vec<Release>,
    supervision: Vec<(String, String)>,
    from_packages: bool,
}

impl TestbedBuilder {
    /// `hosts` hosts whose members start on `release`.
    #[must_use]
    pub fn new(hosts: usize, release: Release) -> Self {
        Self {
            hosts,
            release,
            more_releases: Vec::new(),
            supervision: Vec::new(),
            from_packages: false,
        }
    }

    /// Installs the agent, and the CLI, from the Debian packages that
    /// scripts/package builds into `target/debian/` (the deploy guide's
    /// package route) instead of with `deploy/install-agent`.
    ///
    /// # Panics
    /// At start, when the packages have not been built.
    #[must_use]
    pub const fn from_packages(mut self) -> Self {
        self.from_packages = true;
        self
    }

    /// Also installs `release` on every host, for a roll to it.
    #[must_use]
    pub fn with_release(mut self, release: Release) -> Self {
        self.more_releases.push(release);
        self
    }

    /// Sets `[supervision] key = toml_value` in every agent's config.
    #[must_use]
    pub fn supervision(mut self, key: &str, toml_value: &str) -> Self {
        self.supervision.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// Boots the hosts, installs an agent on each with the deploy script,
    /// and waits until the cluster is healthy.
    ///
    /// # Panics
    /// When the machine cannot run the testbed (no root, no cached root
    /// file system, systemd does not boot in a namespace): the panic says
    /// why. A hosts scenario never passes by skipping.
    pub async fn start(self) -> Testbed {
        preflight();
        sweep_orphaned_testbeds();
        let dir = tempfile::Builder::new()
            .prefix(TESTBED_PREFIX)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a testbed dir: {e}"))
            .keep();
        std::fs::write(dir.join(OWNER_FILE), crate::cluster::own_identity())
            .unwrap_or_else(|e| panic!("cannot write the owner file: {e}"));
        let (subnet, bridge) = create_bridge(&dir);
        let mut testbed = Testbed {
            dir: dir.clone(),
            bridge,
            gateway: Ipv4Addr::new(NETWORK_FIRST_OCTETS[0], NETWORK_FIRST_OCTETS[1], subnet, 1),
            hosts: Vec::new(),
            cluster_file: dir.join("cluster.toml"),
            release: self.release.clone(),
        };
        for i in 0..self.hosts {
            let name = format!("m{i}");
            let address = Ipv4Addr::new(
                NETWORK_FIRST_OCTETS[0],
                NETWORK_FIRST_OCTETS[1],
                subnet,
                10 + u8::try_from(i).unwrap_or(0),
            );
            let host = Host::new(
                &name,
                address,
                dir.join(&name),
                format!("stw{subnet}h{i}"),
                &testbed.bridge,
                24,
            );
            host.prepare_disk(&rootfs());
            testbed.hosts.push(host);
        }
        for host in &mut testbed.hosts {
            host.boot().await;
        }
        testbed.write_pki();
        testbed.write_cluster_file();
        let releases: Vec<Release> = std::iter::once(self.release.clone())
            .chain(self.more_releases.iter().cloned())
            .collect();
        let packages = self.from_packages.then(built_packages);
        for i in 0..testbed.hosts.len() {
            match &packages {
                Some(packages) => testbed.deploy_packages(i, packages, &releases, &self.supervision),
                None => testbed.deploy(i, &releases, &self.supervision),
            }
        }
        testbed.wait_healthy(HEALTHY_TIMEOUT).await;
        testbed
    }
}

/// A running testbed.
#[derive(Debug)]
pub struct Testbed {
    dir: PathBuf,
    bridge: String,
    gateway: Ipv4Addr,
    /// The hosts, `m0`, `m1`, ... (the member names).
    pub hosts: Vec<Host>,
    cluster_file: PathBuf,
    release: Release,
}

impl Testbed {
    /// The cluster file steward takes with `--cluster`: the members, their
    /// agents and client URLs, and steward's own client certificate.
    #[must_use]
    pub fn cluster_file(&self) -> String {
        self.cluster_file.display().to_string()
    }

    /// The testbed's dir on the machine.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The release the members started on.
    #[must_use]
    pub const fn release(&self) -> &Release {
        &self.release
    }

    /// Host `i`'s agent address.
    #[must_use]
    pub fn agent_address(&self, i: usize) -> String {
        format!("{}:{AGENT_PORT}", self.hosts[i].address)
    }

    /// Every member's client URL.
    #[must_use]
    pub fn client_urls(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| format!("http://{}:2379", h.address))
            .collect()
    }

    /// `steward ARGS` from the machine, and its output.
    ///
    /// # Panics
    /// When it cannot be run.
    #[must_use]
    pub fn steward(&self, args: &[&str]) -> Output {
        self.steward_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run steward {args:?}: {e}"))
    }

    /// The command for `steward ARGS`, with the admin identity in the
    /// environment for commands that take no cluster file.
    #[must_use]
    pub fn steward_command(&self, args: &[&str]) -> Command {
        let pki = self.dir.join("pki");
        let mut command = Command::new(steward_binary());
        command
            .args(args)
            .env("STEWARD_AGENT_CACERT", pki.join("ca.crt"))
            .env("STEWARD_AGENT_CERT", pki.join("admin.crt"))
            .env("STEWARD_AGENT_KEY", pki.join("admin.key"))
            .env("NO_COLOR", "1");
        command
    }

    /// An etcd client over every member.
    ///
    /// # Panics
    /// When no member answers.
    pub async fn etcd(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.client_urls(), Some(crate::cluster::etcd_options()))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the testbed's etcd: {e}"))
    }

    /// Waits until `steward status` says the cluster is healthy.
    ///
    /// # Panics
    /// When it is not within `limit`.
    pub async fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.steward(&["status", "--cluster", &self.cluster_file()]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the testbed's cluster is not healthy after {limit:?}:\n{}{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.logs_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until every member answers a quorum read and its agent runs
    /// it, whatever else `steward status` finds (an interrupted change
    /// makes it exit 1 although every member is healthy).
    ///
    /// # Panics
    /// When they do not within `limit`.
    pub async fn wait_members_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.steward(&["status", "--cluster", &self.cluster_file(), "-w", "json"]);
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let healthy = members.len() == self.hosts.len()
                && members
                    .iter()
                    .all(|m| m["healthy"] == true && m["agent_state"] == "running");
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the members are not all healthy after {limit:?}:\n{status:#}\n{}",
                self.logs_hint()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Where to look when something failed.
    #[must_use]
    pub fn logs_hint(&self) -> String {
        let mut hint = String::new();
        for host in self.hosts.iter().filter(|h| h.is_on()) {
            // The agent's own lines and systemd's about it; etcd's forwarded
            // output (identifier etcd) would drown them.
            let journal = host.journal(&["-u", "steward-agent", "-n", "400"]);
            let own: Vec<&str> = journal.lines().filter(|l| !l.contains(" etcd[")).collect();
            let tail = own[own.len().saturating_sub(40)..].join("\n");
            hint.push_str(&format!(
                "--- {} steward-agent journal (last 40 lines):\n{tail}\n",
                host.name
            ));
        }
        hint
    }

    /// The CA, one agent certificate per host with its address in the SAN,
    /// and steward's admin client certificate: made with `steward certs`,
    /// as the security guide says.
    fn write_pki(&self) {
        let pki = self.dir.join("pki");
        let pki_text = pki.display().to_string();
        run_ok(Command::new(steward_binary()).args(["certs", "init", "--dir", &pki_text]));
        for host in &self.hosts {
            run_ok(Command::new(steward_binary()).args([
                "certs",
                "issue",
                "--dir",
                &pki_text,
                "--role",
                "agent",
                "--name",
                &host.name,
                "--san",
                &host.address.to_string(),
            ]));
        }
        run_ok(Command::new(steward_binary()).args([
            "certs", "issue", "--dir", &pki_text, "--role", "admin", "--name", "admin",
        ]));
    }

    fn write_cluster_file(&self) {
        let mut text = String::from(
            "# The hosts testbed's cluster.\nname = \"hosts\"\n\n[agent_tls]\ncacert = \"pki/ca.crt\"\ncert = \"pki/admin.crt\"\nkey = \"pki/admin.key\"\n",
        );
        for (i, host) in self.hosts.iter().enumerate() {
            text.push_str(&format!(
                "\n[[members]]\nname = \"{}\"\nagent = \"{}\"\nclient_url = \"{}\"\n",
                host.name,
                self.agent_address(i),
                self.client_urls()[i]
            ));
        }
        std::fs::write(&self.cluster_file, text).unwrap_or_else(|e| panic!("cannot write the cluster file: {e}"));
    }

    /// The agent's config for host `i`, with the paths the deploy script
    /// installs to.
    fn agent_config(&self, i: usize, supervision: &[(String, String)]) -> String {
        let host = &self.hosts[i];
        let initial_cluster = self
            .hosts
            .iter()
            .map(|h| format!("{}=http://{}:2380", h.name, h.address))
            .collect::<Vec<_>>()
            .join(",");
        let mut extra = String::new();
        for (key, value) in supervision {
            extra.push_str(&format!("{key} = {value}\n"));
        }
        format!(
            r#"# /etc/steward/agent.toml of host {name}, written by the hosts testbed.
listen = "{address}:{AGENT_PORT}"
state_dir = "/var/lib/steward"
import_dirs = ["/opt/etcd-releases"]
initial_binary = "/opt/etcd-releases/{version}/etcd"

[supervision]
stop_grace = "10s"
activate_timeout = "60s"
{extra}
[tls]
cert_file = "/etc/steward/pki/{name}.crt"
key_file = "/etc/steward/pki/{name}.key"
client_ca_file = "/etc/steward/pki/ca.crt"

[member]
name = "{name}"
data_dir = "/var/lib/etcd"
listen_client_urls = ["http://{address}:2379", "http://127.0.0.1:2379"]
advertise_client_urls = ["http://{address}:2379"]
listen_peer_urls = ["http://{address}:2380"]
initial_advertise_peer_urls = ["http://{address}:2380"]
initial_cluster = "{initial_cluster}"
initial_cluster_state = "new"
initial_cluster_token = "hosts-testbed"
"#,
            name = host.name,
            address = host.address,
            version = self.release.version,
        )
    }

    /// Copies what the deploy guide lists onto host `i` and runs
    /// `deploy/install-agent` there, as an operator would.
    fn deploy(&self, i: usize, releases: &[Release], supervision: &[(String, String)]) {
        let host = &self.hosts[i];
        let install = host.root().join("opt/steward-install");
        std::fs::create_dir_all(&install).unwrap_or_else(|e| panic!("cannot create {}: {e}", install.display()));
        let repo = repo_root();
        let pki = self.dir.join("pki");
        let copy = |from: &Path, name: &str| {
            std::fs::copy(from, install.join(name))
                .unwrap_or_else(|e| panic!("cannot copy {} to host {}: {e}", from.display(), host.name));
        };
        copy(&crate::cluster::agent_binary(), "steward-agent");
        copy(&repo.join("deploy/install-agent"), "install-agent");
        copy(&repo.join("deploy/steward-agent.service"), "steward-agent.service");
        copy(&pki.join("ca.crt"), "ca.crt");
        copy(&pki.join(format!("{}.crt", host.name)), &format!("{}.crt", host.name));
        copy(&pki.join(format!("{}.key", host.name)), &format!("{}.key", host.name));
        std::fs::write(install.join("agent.toml"), self.agent_config(i, supervision))
            .unwrap_or_else(|e| panic!("cannot write the config of {}: {e}", host.name));
        let mut args: Vec<String> = [
            "/opt/steward-install/install-agent",
            "--agent",
            "/opt/steward-install/steward-agent",
            "--config",
            "/opt/steward-install/agent.toml",
            "--tls-ca",
            "/opt/steward-install/ca.crt",
            "--unit",
            "/opt/steward-install/steward-agent.service",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push("--tls-cert".into());
        args.push(format!("/opt/steward-install/{}.crt", host.name));
        args.push("--tls-key".into());
        args.push(format!("/opt/steward-install/{}.key", host.name));
        for release in releases {
            let dir = install.join(format!("etcd-{}", release.version));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let source = release.etcd().parent().map(Path::to_path_buf).unwrap_or_default();
            for tool in ["etcd", "etcdctl", "etcdutl"] {
                if source.join(tool).is_file() {
                    copy(&source.join(tool), &format!("etcd-{}/{tool}", release.version));
                }
            }
            args.push("--etcd".into());
            args.push(format!("/opt/steward-install/etcd-{}", release.version));
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = host.exec_ok(&arg_refs);
    }

    /// Installs the packages on host `i` with `dpkg -i`, then what the
    /// package route of the deploy guide asks for: etcd releases, the
    /// certificates, the config (checked as the agent's user), and the
    /// unit enabled and started.
    fn deploy_packages(&self, i: usize, packages: &[PathBuf], releases: &[Release], supervision: &[(String, String)]) {
        let host = &self.hosts[i];
        let install = host.root().join("opt/steward-install");
        std::fs::create_dir_all(&install).unwrap_or_else(|e| panic!("cannot create {}: {e}", install.display()));
        let mut dpkg = vec!["dpkg".to_owned(), "-i".to_owned()];
        for package in packages {
            let name = package
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::copy(package, install.join(&name))
                .unwrap_or_else(|e| panic!("cannot copy {} to host {}: {e}", package.display(), host.name));
            dpkg.push(format!("/opt/steward-install/{name}"));
        }
        let dpkg: Vec<&str> = dpkg.iter().map(String::as_str).collect();
        let _ = host.exec_ok(&dpkg);
        for release in releases {
            Self::install_release_on(host, release);
        }
        let pki = self.dir.join("pki");
        for (file, mode) in [
            ("ca.crt".to_owned(), 0o644),
            (format!("{}.crt", host.name), 0o644),
            (format!("{}.key", host.name), 0o600),
        ] {
            let to = host.root().join("etc/steward/pki").join(&file);
            std::fs::copy(pki.join(&file), &to).unwrap_or_else(|e| panic!("cannot copy {file} to {}: {e}", host.name));
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap_or_else(|e| panic!("mode of {}: {e}", to.display()));
        }
        let key = format!("/etc/steward/pki/{}.key", host.name);
        let _ = host.exec_ok(&["chown", "etcd:etcd", &key]);
        std::fs::write(
            host.root().join("etc/steward/agent.toml"),
            self.agent_config(i, supervision),
        )
        .unwrap_or_else(|e| panic!("cannot write the config of {}: {e}", host.name));
        let _ = host.exec_ok(&["chown", "root:etcd", "/etc/steward/agent.toml"]);
        let _ = host.exec_ok(&["chmod", "0640", "/etc/steward/agent.toml"]);
        let _ = host.exec_ok(&[
            "runuser",
            "-u",
            "etcd",
            "--",
            "steward-agent",
            "--check-config",
            "--config",
            "/etc/steward/agent.toml",
        ]);
        let _ = host.exec_ok(&["systemctl", "enable", "--now", "steward-agent"]);
    }

    /// Installs a further etcd release on every host, as the deploy guide
    /// says (a version dir under /opt/etcd-releases).
    pub fn install_release(&self, release: &Release) {
        for host in &self.hosts {
            Self::install_release_on(host, release);
        }
    }

    fn install_release_on(host: &Host, release: &Release) {
        let source = release.etcd().parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = host.root().join(format!("opt/etcd-releases/{}", release.version));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        for tool in ["etcd", "etcdctl", "etcdutl"] {
            if source.join(tool).is_file() {
                std::fs::copy(source.join(tool), dir.join(tool))
                    .unwrap_or_else(|e| panic!("cannot copy {tool} to {}: {e}", host.name));
            }
        }
    }

    /// The gateway address (the machine's end of the bridge).
    #[must_use]
    pub const fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    fn teardown(&mut self) {
        for host in &mut self.hosts {
            host.destroy();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_hint());
        }
        self.teardown();
        if std::thread::panicking() {
            // Only the hosts' logs stay for debugging (their disks hold
            // copies of every binary); without the owner file, the next
            // testbed's sweep removes them.
            for host in &self.hosts {
                let disk = self.dir.join(&host.name).join("upper");
                let kept = self.dir.join("kept").join(&host.name);
                for (from, to) in [("var/log/journal", "journal"), ("var/lib/steward/logs", "logs")] {
                    if std::fs::create_dir_all(&kept).is_ok() {
                        let _ = std::fs::rename(disk.join(from), kept.join(to));
                    }
                }
                let _ = std::fs::copy(self.dir.join(&host.name).join("console.log"), kept.join("console.log"));
                let _ = std::fs::remove_dir_all(self.dir.join(&host.name));
            }
            eprintln!(
                "hosts testbed logs kept for debugging (journalctl -D DIR/journal): {}",
                self.dir.join("kept").display()
            );
            let _ = std::fs::remove_file(self.dir.join(OWNER_FILE));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The packages scripts/package built: the agent's, then the CLI's.
///
/// # Panics
/// When they are missing: scripts/test builds them before the tests run.
#[must_use]
pub fn built_packages() -> Vec<PathBuf> {
    let dir = repo_root().join("target/debian");
    let version = env!("CARGO_PKG_VERSION");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ["steward-agent", "steward"]
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}_{version}-1_{arch}.deb"));
            assert!(
                path.is_file(),
                "{} is missing: build the packages with scripts/package (scripts/test does, before the tests)",
                path.display()
            );
            path
        })
        .collect()
}

/// The repository's root.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cached root file system scripts/setup-hosts makes.
#[must_use]
pub fn rootfs() -> PathBuf {
    let base = std::env::var_os("STEWARD_HOSTS_DIR").map_or_else(
        || {
            binaries_dir()
                .parent()
                .map_or_else(|| PathBuf::from("."), |p| p.join("hosts"))
        },
        PathBuf::from,
    );
    base.join("bookworm")
}

/// Fails with the reason when this machine cannot run the testbed.
fn preflight() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the hosts testbed needs root (overlay mounts, namespaces, veth links); run the tests as root"
    );
    let check = Command::new(repo_root().join("scripts/setup-hosts"))
        .arg("--check")
        .env("STEWARD_HOSTS_DIR", rootfs().parent().unwrap_or(Path::new("/")))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/setup-hosts --check: {e}"));
    assert!(
        check.status.success(),
        "the hosts testbed has no root file system: {} (scripts/test runs scripts/setup-hosts first)",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    for tool in ["unshare", "nsenter", "ip", "mount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "the hosts testbed needs {tool} on this machine");
    }
}

/// Creates a bridge on a free /24 and gives the machine its first address.
fn create_bridge(dir: &Path) -> (u8, String) {
    for subnet in 1..=250u8 {
        let bridge = format!("stwb{subnet}");
        let added = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !added {
            continue;
        }
        std::fs::write(dir.join(BRIDGE_FILE), &bridge).unwrap_or_else(|e| panic!("cannot record the bridge: {e}"));
        let gateway = format!("{}.{}.{subnet}.1/24", NETWORK_FIRST_OCTETS[0], NETWORK_FIRST_OCTETS[1]);
        run_ok(Command::new("ip").args(["addr", "add", &gateway, "dev", &bridge]));
        run_ok(Command::new("ip").args(["link", "set", &bridge, "up"]));
        return (subnet, bridge);
    }
    panic!("no free bridge name stwb1..stwb250 for the hosts testbed");
}

/// Tears down testbeds whose test process died without doing it (a test
/// runner's SIGKILL skips `Drop`): their hosts, mounts, bridge and files.
fn sweep_orphaned_testbeds() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TESTBED_PREFIX) {
            continue;
        }
        let dir = entry.path();
        if std::fs::read_to_string(dir.join(OWNER_FILE)).is_ok_and(|owner| crate::cluster::identity_alive(&owner)) {
            continue;
        }
        eprintln!("tearing down an orphaned hosts testbed in {}", dir.display());
        let Ok(hosts) = std::fs::read_dir(&dir) else {
            continue;
        };
        for host in hosts.flatten().filter(|h| h.path().is_dir()) {
            if let Some(pid) = std::fs::read_to_string(host.path().join(host::PID1_FILE))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                && std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == host.path().join("root"))
            {
                host::kill9(pid);
            }
            host::unmount(&host.path().join("root"));
        }
        if let Ok(bridge) = std::fs::read_to_string(dir.join(BRIDGE_FILE)) {
            let _ = Command::new("ip").args(["link", "del", bridge.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
