//! The shipped unit as systemd users expect it, on real hosts: the unit
//! verifies, the watchdog restarts a hung agent while etcd keeps running,
//! SIGHUP does not leave etcd unsupervised, a host's shutdown stops etcd
//! cleanly before the network goes, logs are journald's (priorities, no
//! escapes, a fatal error once), and a bad config is caught by
//! `--check-config` before systemd starts anything.

use std::time::{Duration, Instant};

use steward_tests::hosts::{Host, TestbedBuilder};
use steward_tests::newest;

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")), signal)
        .unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
}

fn main_pid(host: &Host) -> String {
    host.unit_property("steward-agent", "MainPID")
}

/// A time span as `systemctl show` prints it: "30s", "1min 30s", "500ms".
fn systemd_timespan(text: &str) -> Duration {
    text.split_whitespace()
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let value: u64 = digits.parse().unwrap_or_else(|_| panic!("a time span: {text:?}"));
            match &part[digits.len()..] {
                "min" => Duration::from_secs(value * 60),
                "s" => Duration::from_secs(value),
                "ms" => Duration::from_millis(value),
                "us" => Duration::from_micros(value),
                unit => panic!("unit {unit:?} in {text:?}"),
            }
        })
        .sum()
}

/// Polls until `condition` holds; returns how long that took.
async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_verifies_and_says_what_it_promises() {
    let testbed = TestbedBuilder::new(1, newest(3, 5)).start().await;
    let host = &testbed.hosts[0];
    let verify = host.exec(&["systemd-analyze", "verify", "/etc/systemd/system/steward-agent.service"]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    for (property, value) in [
        ("Type", "notify"),
        ("KillMode", "process"),
        ("Restart", "on-failure"),
        ("NotifyAccess", "main"),
    ] {
        assert_eq!(host.unit_property("steward-agent", property), value, "{property}");
    }
    assert_ne!(
        host.unit_property("steward-agent", "WatchdogUSec"),
        "0",
        "a watchdog is set"
    );
    assert_ne!(
        host.unit_property("steward-agent", "StartLimitBurst"),
        "",
        "a start limit is set"
    );
    let status = host.unit_property("steward-agent", "StatusText");
    assert!(!status.is_empty(), "the agent says what it does in STATUS=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_restarts_a_hung_agent_while_etcd_keeps_running() {
    let testbed = TestbedBuilder::new(1, newest(3, 5)).start().await;
    let host = &testbed.hosts[0];
    let period = host.unit_property("steward-agent", "WatchdogUSec");
    let etcd = host.pid_of("etcd");
    let etcd_inside = host.pid_inside(etcd);
    let agent = host.pid_of("steward-agent");
    let before = main_pid(host);
    signal(agent, nix::sys::signal::Signal::SIGSTOP);
    let took = wait_until(Duration::from_secs(120), "a watchdog restart", || {
        let now = main_pid(host);
        now != before && now != "0"
    })
    .await;
    eprintln!("watchdog period {period}; the hung agent was replaced after {took:?}");
    // The watchdog period, then RestartSec=2s and the new agent's start:
    // not TimeoutStopSec (300 s) or anything like it.
    let bound = systemd_timespan(&period) + Duration::from_secs(15);
    assert!(took <= bound, "replaced after {took:?}, more than {bound:?}");
    let journal = host.journal(&["-u", "steward-agent", "-o", "cat"]);
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    assert_eq!(
        host.pid_of("etcd"),
        etcd,
        "etcd kept running through the agent's restart"
    );
    testbed.wait_healthy(Duration::from_secs(30)).await;
    let journal = host.journal(&["-u", "steward-agent", "-o", "cat"]);
    assert!(
        journal.contains(&format!("adopted running etcd pid={etcd_inside}")),
        "the new agent adopted etcd:\n{journal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_leaves_the_agent_supervising_etcd() {
    let testbed = TestbedBuilder::new(1, newest(3, 5)).start().await;
    let host = &testbed.hosts[0];
    let etcd = host.pid_of("etcd");
    let before = main_pid(host);
    signal(host.pid_of("steward-agent"), nix::sys::signal::Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the SIGHUP log line", || {
        host.journal(&["-u", "steward-agent", "-o", "cat"]).contains("SIGHUP")
    })
    .await;
    assert_eq!(main_pid(host), before, "the agent did not end");
    assert_eq!(host.unit_property("steward-agent", "ActiveState"), "active");
    assert_eq!(host.pid_of("etcd"), etcd);
    // Still supervising: a killed etcd is started again.
    signal(etcd, nix::sys::signal::Signal::SIGKILL);
    wait_until(Duration::from_secs(30), "etcd restarted by the agent", || {
        host.pids_named("etcd").iter().any(|p| *p != etcd)
    })
    .await;
    testbed.wait_healthy(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_shutdown_stops_etcd_cleanly_and_the_member_rejoins_after_boot() {
    let mut testbed = TestbedBuilder::new(3, newest(3, 5)).start().await;
    let took = testbed.hosts[1].power_off().await;
    eprintln!("m1 powered off in {took:?}");
    let host = &testbed.hosts[1];
    // Read from the host's disk while it is off.
    let journal_dir = host.root().join("var/log/journal");
    let journal = std::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "-D"])
        .arg(&journal_dir)
        .output()
        .expect("journalctl on the machine");
    let journal = String::from_utf8_lossy(&journal.stdout).into_owned();
    assert!(
        journal.contains("the host is shutting down"),
        "the agent saw the shutdown:\n{journal}"
    );
    let etcd_log = std::fs::read_to_string(host.root().join("var/lib/steward/logs/etcd.log")).expect("etcd's log");
    assert!(
        etcd_log.contains("received signal; shutting down"),
        "etcd stopped on SIGTERM:\n{etcd_log}"
    );
    assert!(
        journal.contains("etcd stopped cleanly for the host's shutdown"),
        "the agent stopped etcd before it ended:\n{journal}"
    );
    assert!(
        !journal.contains("Sending SIGKILL to PID") && !journal.contains("exit=killed by SIGKILL"),
        "nothing was killed at the end:\n{journal}"
    );
    testbed.hosts[1].boot().await;
    testbed.wait_healthy(Duration::from_secs(60)).await;
}

/// One journal entry, as `journalctl -o json` prints it.
fn entries(host: &Host, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    host.journal(&all)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn text(entry: &serde_json::Value) -> String {
    entry["MESSAGE"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_journald_entries_with_priorities_and_a_fatal_error_is_logged_once() {
    let testbed = TestbedBuilder::new(1, newest(3, 5)).start().await;
    let host = &testbed.hosts[0];
    let agent_lines = entries(host, &["-u", "steward-agent", "-t", "steward-agent"]);
    assert!(!agent_lines.is_empty(), "the agent logs to the journal");
    for entry in &agent_lines {
        let message = text(entry);
        assert!(!message.contains('\u{1b}'), "no terminal escapes: {message:?}");
        assert!(
            !message.starts_with('<'),
            "journald read the priority prefix: {message:?}"
        );
        let priority = entry["PRIORITY"].as_str().unwrap_or_default();
        if message.trim_start().starts_with("INFO") {
            assert_eq!(priority, "6", "{message}");
        }
        if message.trim_start().starts_with("WARN") {
            assert_eq!(priority, "4", "{message}");
        }
    }
    // etcd's own output is in the journal too, under the agent's unit,
    // with the priority of each line.
    wait_until(Duration::from_secs(15), "etcd's start in the journal", || {
        entries(host, &["-u", "steward-agent", "-t", "etcd"])
            .iter()
            .any(|e| text(e).contains("starting an etcd server") && e["PRIORITY"] == "6")
    })
    .await;

    // A config the agent refuses: the unit fails, the error is logged once
    // per start at priority err, and etcd keeps running meanwhile.
    let etcd = host.pid_of("etcd");
    let config = host.root().join("etc/steward/agent.toml");
    let good = std::fs::read_to_string(&config).expect("the config");
    std::fs::write(&config, format!("{good}\n[limits]\nmax_upload_bytes = 1\n")).expect("a bad config");
    let restart = host.exec(&["systemctl", "restart", "steward-agent"]);
    assert!(!restart.status.success(), "the agent refuses the config");
    let errors = entries(host, &["-u", "steward-agent", "-t", "steward-agent", "-p", "err"]);
    assert!(!errors.is_empty(), "journalctl -p err finds the error");
    let mut per_start = std::collections::BTreeMap::<String, usize>::new();
    for entry in &errors {
        assert!(text(entry).contains("max_upload_bytes"), "{}", text(entry));
        *per_start
            .entry(entry["_SYSTEMD_INVOCATION_ID"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert!(per_start.values().all(|n| *n == 1), "once per start: {per_start:?}");
    assert_eq!(host.pid_of("etcd"), etcd, "etcd kept running");

    std::fs::write(&config, good).expect("the good config");
    let _ = host.exec(&["systemctl", "reset-failed", "steward-agent"]);
    let _ = host.exec_ok(&["systemctl", "start", "steward-agent"]);
    testbed.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(
        host.pid_of("etcd"),
        etcd,
        "the agent adopted the etcd that kept running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_script_checks_the_config_before_systemd_starts_anything() {
    let testbed = TestbedBuilder::new(1, newest(3, 5)).start().await;
    let host = &testbed.hosts[0];
    let before = main_pid(host);
    // A data dir the unit's user cannot write.
    let staged = host.root().join("opt/steward-install/agent.toml");
    let good = std::fs::read_to_string(&staged).expect("the staged config");
    let bad = good.replace("data_dir = \"/var/lib/etcd\"", "data_dir = \"/srv/etcd\"");
    assert_ne!(good, bad);
    std::fs::write(&staged, bad).expect("write the bad config");
    let install = host.exec(&[
        "/opt/steward-install/install-agent",
        "--agent",
        "/opt/steward-install/steward-agent",
        "--config",
        "/opt/steward-install/agent.toml",
        "--tls-cert",
        "/opt/steward-install/m0.crt",
        "--tls-key",
        "/opt/steward-install/m0.key",
        "--tls-ca",
        "/opt/steward-install/ca.crt",
        "--etcd",
        &format!("/opt/steward-install/etcd-{}", testbed.release().version),
    ]);
    let stdout = String::from_utf8_lossy(&install.stdout);
    let stderr = String::from_utf8_lossy(&install.stderr);
    assert_eq!(install.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILED  member.data_dir") && stdout.contains("/srv"),
        "the check names the field and the path:\n{stdout}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert_eq!(main_pid(host), before, "the running agent was left alone");
    let live = std::fs::read_to_string(host.root().join("etc/steward/agent.toml")).expect("the live config");
    assert_eq!(live, good, "the live config is unchanged");
    // The check itself, as an operator runs it: the live config passes.
    let check = host.exec(&[
        "runuser",
        "-u",
        "etcd",
        "--",
        "steward-agent",
        "--check-config",
        "--config",
        "/etc/steward/agent.toml",
    ]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{text}");
    assert!(text.contains("checks passed"), "{text}");
    testbed.wait_healthy(Duration::from_secs(30)).await;
}
