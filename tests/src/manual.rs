//! The guides' manual procedures, for the benchmarks to measure steward
//! against: etcd members started by hand (no agent), and driven the way an
//! operator does, with etcdctl and etcdutl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binaries::Release;
use crate::cluster::kill_processes_mentioning;
use crate::ports::{PortLease, lease};

/// A member run by hand.
#[derive(Debug)]
pub struct ManualMember {
    /// etcd's `--name`.
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    /// Its peer URL.
    pub peer_url: String,
    /// The flags it runs with, `--data-dir` last.
    pub args: Vec<String>,
    child: Option<Child>,
}

/// A 3-member cluster run by hand, as in the guides.
#[derive(Debug)]
pub struct ManualCluster {
    /// Its members.
    pub members: Vec<ManualMember>,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// Where its data dirs and logs are.
    pub dir: tempfile::TempDir,
    _ports: Vec<PortLease>,
}

impl ManualCluster {
    /// Starts 3 members of `release` and waits until they are healthy.
    pub async fn start(release: &Release, extra_flags: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("steward-manual-")
            .tempdir()
            .expect("dir");
        let ports: Vec<PortLease> = (0..6).map(|_| lease()).collect();
        let peers: Vec<String> = (0..3)
            .map(|i| format!("http://127.0.0.1:{}", ports[2 * i + 1].port()))
            .collect();
        let initial_cluster = (0..3)
            .map(|i| format!("m{i}={}", peers[i]))
            .collect::<Vec<_>>()
            .join(",");
        let members = (0..3)
            .map(|i| {
                let client_url = format!("http://127.0.0.1:{}", ports[2 * i].port());
                let mut args = vec![
                    format!("--name=m{i}"),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={}", peers[i]),
                    format!("--initial-advertise-peer-urls={}", peers[i]),
                    format!("--initial-cluster={initial_cluster}"),
                    "--initial-cluster-state=new".into(),
                    "--initial-cluster-token=manual".into(),
                ];
                args.extend(extra_flags.iter().map(|f| (*f).to_owned()));
                args.push(format!("--data-dir={}", dir.path().join(format!("m{i}")).display()));
                ManualMember {
                    name: format!("m{i}"),
                    client_url,
                    peer_url: peers[i].clone(),
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self {
            members,
            initial_cluster,
            dir,
            _ports: ports,
        };
        for i in 0..3 {
            cluster.start_member(i, &release.etcd());
        }
        wait_healthy(release, &cluster.endpoints()).await;
        cluster
    }

    /// Every client URL, comma-separated (etcdctl's `--endpoints`).
    #[must_use]
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` with `binary` and its flags, logging next to its
    /// data dir.
    pub fn start_member(&mut self, i: usize, binary: &Path) {
        let log = self.dir.path().join(format!("m{i}.log"));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log");
        let child = Command::new(binary)
            .args(&self.members[i].args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// SIGTERM to member `i`, and waits until it has exited.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            child.wait().expect("etcd exits");
        }
    }

    /// Points member `i` at another data dir (the last flag).
    pub fn set_data_dir(&mut self, i: usize, data_dir: &Path) {
        if let Some(last) = self.members[i].args.last_mut() {
            *last = format!("--data-dir={}", data_dir.display());
        }
    }

    /// The index of the member that leads (from `endpoint status`).
    #[must_use]
    pub fn leader_index(&self, release: &Release) -> usize {
        for (i, m) in self.members.iter().enumerate() {
            let out = etcdctl(release, &m.client_url, &["endpoint", "status", "-w", "json"]);
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("endpoint status JSON");
            let status = &json[0]["Status"];
            if status["header"]["member_id"] == status["leader"] {
                return i;
            }
        }
        panic!("no leader");
    }

    /// Stops every member and everything still running in its dir.
    pub fn stop(mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        kill_processes_mentioning(self.dir.path());
    }

    /// A new dir inside the cluster's.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// etcdctl of `release` against `endpoints`.
#[must_use]
pub fn etcdctl(release: &Release, endpoints: &str, args: &[&str]) -> std::process::Output {
    Command::new(release.etcdctl())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// The hex member id `endpoint` reports.
#[must_use]
pub fn member_id(release: &Release, endpoint: &str) -> String {
    let out = etcdctl(release, endpoint, &["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("endpoint status JSON");
    let id = json[0]["Status"]["header"]["member_id"].as_u64().expect("member id");
    format!("{id:x}")
}

/// `curl <client url>/version`, by hand.
#[must_use]
pub fn http_version(client_url: &str) -> String {
    use std::io::{Read, Write};
    let address = client_url.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(stream, "GET /version HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// `etcdctl endpoint health` until it says healthy (what an operator does).
pub async fn wait_healthy(release: &Release, endpoints: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = etcdctl(release, endpoints, &["endpoint", "health"]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
