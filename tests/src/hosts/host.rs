//! One test host: real systemd as PID 1 of its own PID, mount, UTS and
//! network namespaces, booted on an overlay of the cached root file system
//! (scripts/setup-hosts), with one veth link into the testbed's bridge.
//!
//! Its disk (the overlay's upper dir) outlives a power-off, so a host can be
//! booted again with everything it had written, as a real host reboots.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a boot may take until `systemctl is-system-running` settles.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean power-off may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a host's state is polled.
const POLL: Duration = Duration::from_millis(200);
/// The file holding the pid of the host's systemd, for the sweeper.
pub(super) const PID1_FILE: &str = "pid1";

/// A host of the testbed.
#[derive(Debug)]
pub struct Host {
    /// Its host name, and the etcd member's name.
    pub name: String,
    /// Its address on the testbed's bridge.
    pub address: Ipv4Addr,
    /// Its files: `upper/` (its disk), `work/`, `root/` (the overlay as
    /// the host sees it), `console.log`.
    dir: PathBuf,
    /// The machine's end of its veth pair, a port of the bridge.
    link: String,
    bridge: String,
    prefix_len: u8,
    /// The `unshare` that runs the host's systemd, while it is powered on.
    boot: Option<Child>,
    /// The host's PID 1, as the machine sees it.
    pid1: Option<u32>,
}

impl Host {
    pub(super) fn new(name: &str, address: Ipv4Addr, dir: PathBuf, link: String, bridge: &str, prefix_len: u8) -> Self {
        Self {
            name: name.to_owned(),
            address,
            dir,
            link,
            bridge: bridge.to_owned(),
            prefix_len,
            boot: None,
            pid1: None,
        }
    }

    /// The host's root file system, as the machine sees it: files written
    /// here are the host's files.
    #[must_use]
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The host's PID 1 (its systemd), as the machine sees it.
    ///
    /// # Panics
    /// When the host is powered off.
    #[must_use]
    pub fn pid1(&self) -> u32 {
        self.pid1.unwrap_or_else(|| panic!("host {} is powered off", self.name))
    }

    /// True while the host runs.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.pid1.is_some()
    }

    /// Mounts the host's overlay (once) over `lower`, the cached root.
    pub(super) fn prepare_disk(&self, lower: &Path) {
        let root = self.root();
        if is_mounted(&root) {
            return;
        }
        for sub in ["upper", "work", "root"] {
            std::fs::create_dir_all(self.dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.join(sub).display()));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&root),
        );
        std::fs::write(root.join("etc/hostname"), format!("{}\n", self.name))
            .unwrap_or_else(|e| panic!("cannot name host {}: {e}", self.name));
    }

    /// Powers the host on: boots its systemd, links it to the bridge and
    /// waits until systemd says the system is up.
    ///
    /// # Panics
    /// When it does not boot within a minute, or boots with failed units.
    pub async fn boot(&mut self) {
        assert!(self.boot.is_none(), "host {} is already on", self.name);
        let root = self.root();
        let console = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))
            .unwrap_or_else(|e| panic!("console log of {}: {e}", self.name));
        // The bind mount of the root onto itself makes it a mount point of
        // the host's mount namespace, which systemd's sandboxing
        // (ProtectSystem=, ReadWritePaths=) needs to set up a unit.
        let script = format!(
            "mount --bind {root} {root} && exec unshare --pid --fork --uts --net --root={root} --mount-proc /lib/systemd/systemd",
            root = root.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("container", "steward-test")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap_or_else(|e| panic!("console: {e}")))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot boot host {}: {e}", self.name));
        let outer = child.id();
        self.boot = Some(child);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let pid1 = loop {
            if let Some(pid) = systemd_child_of(outer) {
                break pid;
            }
            assert!(Instant::now() < deadline, "host {}: systemd did not start", self.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.pid1 = Some(pid1);
        std::fs::write(self.dir.join(PID1_FILE), pid1.to_string())
            .unwrap_or_else(|e| panic!("cannot record the pid of {}: {e}", self.name));
        self.link_to_bridge();
        self.wait_running(deadline).await;
    }

    /// Creates the host's veth pair: `eth0` inside with its address, the
    /// other end a port of the bridge.
    fn link_to_bridge(&self) {
        let pid1 = self.pid1().to_string();
        run_ok(Command::new("ip").args([
            "link", "add", &self.link, "type", "veth", "peer", "name", "eth0", "netns", &pid1,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &self.link, "master", &self.bridge, "up"]));
        let cidr = format!("{}/{}", self.address, self.prefix_len);
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &cidr, "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
        ] {
            run_ok(Command::new("nsenter").args(["-t", &pid1, "-n"]).args(args));
        }
    }

    async fn wait_running(&self, deadline: Instant) {
        loop {
            let out = self.exec(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            match state.as_str() {
                "running" => return,
                "degraded" => {
                    let failed = self.exec(&["systemctl", "--failed", "--no-pager", "--plain"]);
                    panic!(
                        "host {} booted with failed units:\n{}",
                        self.name,
                        String::from_utf8_lossy(&failed.stdout)
                    );
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "host {}: systemd is still {state:?} after {BOOT_TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `args` inside the host (all its namespaces, its root), as root,
    /// and waits for it.
    ///
    /// # Panics
    /// When it cannot be run at all.
    #[must_use]
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} on {}: {e}", self.name))
    }

    /// Like [`Host::exec`], and panics unless it exits 0.
    ///
    /// # Panics
    /// When it fails.
    #[must_use]
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} on {} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The command that runs `args` inside the host.
    #[must_use]
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.pid1().to_string(), "-a", "-r", "-w"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .stdin(Stdio::null());
        command
    }

    /// The host's journal, `journalctl --no-pager ARGS`.
    #[must_use]
    pub fn journal(&self, args: &[&str]) -> String {
        let mut all = vec!["journalctl", "--no-pager", "-q"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.exec(&all).stdout).into_owned()
    }

    /// The machine's pids of the host's processes whose command name is
    /// `comm` (as `/proc/PID/comm` says), found from outside: the host has
    /// no procps.
    #[must_use]
    pub fn pids_named(&self, comm: &str) -> Vec<u32> {
        let root = self.root();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                    && std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root)
            })
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The pid the host itself sees for the machine's `pid` (the last
    /// entry of `NSpid` in `/proc/PID/status`): what the host's logs say.
    ///
    /// # Panics
    /// When the process is gone.
    #[must_use]
    pub fn pid_inside(&self, pid: u32) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("process {pid} of {}: {e}", self.name));
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|ids| ids.split_whitespace().last())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("process {pid} has no NSpid"))
    }

    /// The one process named `comm` on the host.
    ///
    /// # Panics
    /// When there is none, or more than one.
    #[must_use]
    pub fn pid_of(&self, comm: &str) -> u32 {
        let pids = self.pids_named(comm);
        assert_eq!(pids.len(), 1, "host {}: processes named {comm}: {pids:?}", self.name);
        pids[0]
    }

    /// A unit property, `systemctl show -P NAME UNIT`.
    #[must_use]
    pub fn unit_property(&self, unit: &str, name: &str) -> String {
        self.exec_ok(&["systemctl", "show", "-P", name, unit]).trim().to_owned()
    }

    /// Powers the host off cleanly (`systemctl poweroff`) and waits until
    /// its systemd has ended; returns how long that took.
    ///
    /// # Panics
    /// When the shutdown hangs.
    pub async fn power_off(&mut self) -> Duration {
        let started = Instant::now();
        let out = self.exec(&["systemctl", "poweroff"]);
        assert!(
            out.status.success(),
            "systemctl poweroff on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let ended = self.wait_ended(SHUTDOWN_TIMEOUT).await;
        assert!(
            ended,
            "host {} did not power off within {SHUTDOWN_TIMEOUT:?}",
            self.name
        );
        started.elapsed()
    }

    /// Cuts the host's power: SIGKILL to its PID 1 ends every process of
    /// the host at once, with no shutdown.
    pub async fn power_cut(&mut self) {
        if let Some(pid1) = self.pid1 {
            kill9(pid1);
        }
        let ended = self.wait_ended(Duration::from_secs(30)).await;
        assert!(ended, "host {} survived SIGKILL of its PID 1", self.name);
    }

    /// Power off and on again, cleanly.
    pub async fn reboot(&mut self) {
        self.power_off().await;
        self.boot().await;
    }

    async fn wait_ended(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(child) = self.boot.as_mut() {
            if child.try_wait().ok().flatten().is_some() {
                self.boot = None;
                self.pid1 = None;
                let _ = std::fs::remove_file(self.dir.join(PID1_FILE));
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
        true
    }

    /// Takes the host's link down (its cable pulled): the host runs on, but
    /// nothing reaches it and it reaches nothing.
    pub fn link_down(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.link, "down"]));
    }

    /// Puts the host's link back.
    pub fn link_up(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.link, "up"]));
    }

    /// Ends the host at once and releases its disk: for teardown.
    pub(super) fn destroy(&mut self) {
        if let Some(pid1) = self.pid1.take() {
            kill9(pid1);
        }
        if let Some(mut child) = self.boot.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The machine's end outlives the host's network namespace until
        // the kernel has reaped every process of the host: remove it now,
        // so that a new testbed can take the name at once.
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
        unmount(&self.root());
    }
}

/// The child of `outer` (the `unshare --fork` that became the host's init)
/// once it runs systemd.
fn systemd_child_of(outer: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).ok()?;
    // `sh` execs `unshare`, which forks the host's PID 1 and waits for it.
    let inner = children.split_whitespace().next()?.parse::<u32>().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{inner}/comm")).ok()?;
    (comm.trim() == "systemd").then_some(inner)
}

pub(super) fn kill9(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

pub(super) fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.display().to_string();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point == wanted)
}

/// Lazily unmounts `path` if it is a mount point.
pub(super) fn unmount(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// Runs a machine command that must succeed.
pub(super) fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
