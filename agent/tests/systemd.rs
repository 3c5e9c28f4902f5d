//! The agent binary as systemd sees it, without systemd: the sd_notify
//! messages it sends to a socket named by `NOTIFY_SOCKET` (READY, STATUS,
//! WATCHDOG, STOPPING), its signals, its stderr under journald
//! (`JOURNAL_STREAM`) and elsewhere, and `--check-config`. The agent runs
//! without etcd: a fresh state dir and no `initial_binary` start nothing.

// Test code: a failed expectation is a failed test, not an error to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn agent() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward-agent"));
    command.env("RUST_LOG", "info").env_remove("JOURNAL_STREAM");
    command
}

/// An insecure loopback agent config in `dir`, on a port of the kernel's
/// choice.
fn config(dir: &Path) -> PathBuf {
    let d = dir.display();
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            listen = "127.0.0.1:0"
            state_dir = "{d}/state"
            insecure = true
            [member]
            name = "m1"
            data_dir = "{d}/data"
            listen_client_urls = ["http://127.0.0.1:2379"]
            advertise_client_urls = ["http://127.0.0.1:2379"]
            listen_peer_urls = ["http://127.0.0.1:2380"]
            initial_advertise_peer_urls = ["http://127.0.0.1:2380"]
            initial_cluster = "m1=http://127.0.0.1:2380"
            "#
        ),
    )
    .unwrap();
    path
}

/// Receives sd_notify messages until one contains `wanted`; returns all of
/// them so far.
fn wait_for(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {wanted:?} within 30 s; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l.starts_with(wanted));
            seen.push(message);
            if found {
                return;
            }
        }
    }
}

#[test]
fn notify_protocol_watchdog_sighup_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.socket");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut child = agent()
        .arg("--config")
        .arg(config(dir.path()))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let mut seen = Vec::new();

    wait_for(&socket, "READY=1", &mut seen);
    let ready = seen.last().unwrap();
    assert!(
        ready.contains("STATUS=serving; no etcd version active yet"),
        "{ready:?}"
    );
    assert!(
        seen[0].starts_with("STATUS=starting"),
        "a status before ready: {seen:?}"
    );
    wait_for(&socket, "WATCHDOG=1", &mut seen);

    // SIGHUP is ignored: the agent keeps pinging the watchdog after it.
    kill(pid, Signal::SIGHUP).unwrap();
    seen.clear();
    wait_for(&socket, "WATCHDOG=1", &mut seen);
    wait_for(&socket, "WATCHDOG=1", &mut seen);
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the agent");

    kill(pid, Signal::SIGTERM).unwrap();
    wait_for(&socket, "STOPPING=1", &mut seen);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("SIGHUP received and ignored"), "{log}");
}

#[test]
fn a_fatal_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let output = agent().arg("--config").arg(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "steward-agent: cannot read config file {}: ",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn with_json_every_line_on_stderr_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // A state dir that is a file: the agent logs, then fails to start.
    std::fs::write(dir.path().join("state"), "").unwrap();
    let output = agent()
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.lines().count() >= 1, "{stderr}");
    for line in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("the agent could not start"),
        "{last}"
    );
}

#[test]
fn under_journald_lines_carry_their_priority() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let identity = stderr.metadata().unwrap();
    let missing = dir.path().join("missing.toml");
    let status = agent()
        .arg("--config")
        .arg(&missing)
        .env("JOURNAL_STREAM", format!("{}:{}", identity.dev(), identity.ino()))
        .stderr(stderr)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        text.starts_with("<3>steward-agent: cannot read config file"),
        "{text:?}"
    );
    assert!(text.lines().all(|l| l.starts_with('<')), "{text:?}");

    // A JOURNAL_STREAM inherited from elsewhere is not stderr's: no prefix.
    let output = agent()
        .arg("--config")
        .arg(&missing)
        .env("JOURNAL_STREAM", "1:1")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.starts_with("steward-agent: "), "{text:?}");
}

/// `steward-agent --check-config --config FILE`: its exit code and stdout.
fn check_config(config: &std::path::Path) -> (Option<i32>, String) {
    let output = agent()
        .arg("--check-config")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn check_config_exits_0_when_all_pass_and_2_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (code, stdout) = check_config(&config);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("ok      config: "), "{stdout}");
    assert!(stdout.ends_with("checks passed\n"), "{stdout}");
    assert!(!dir.path().join("state").exists(), "the check creates nothing");

    std::fs::write(dir.path().join("state"), "").unwrap();
    let (code, stdout) = check_config(&config);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("FAILED  state_dir: "), "{stdout}");
    assert!(stdout.ends_with("checks FAILED\n"), "{stdout}");
}
