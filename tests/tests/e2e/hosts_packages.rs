//! The Debian packages as shipped: scripts/package's `steward-agent` and
//! `steward` installed with `dpkg -i` on clean Debian hosts under systemd,
//! the agent configured as the deploy guide's package route says and its
//! packaged unit started: the binaries run, the cluster forms and answers,
//! the users, directories, unit, man pages and completions are where the
//! guide says; reinstalling the agent package restarts the agent without
//! touching etcd; and removing a package removes its files.

use std::time::{Duration, Instant};

use steward_tests::hosts::TestbedBuilder;
use steward_tests::newest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_on_clean_hosts_and_run_the_cluster() {
    let testbed = TestbedBuilder::new(3, newest(3, 5)).from_packages().start().await;
    let host = &testbed.hosts[0];
    let version = env!("CARGO_PKG_VERSION");

    // The binaries run, from where the packages put them.
    let agent_version = host.exec_ok(&["/usr/bin/steward-agent", "--version"]);
    assert_eq!(agent_version.trim(), format!("steward-agent {version}"));
    let cli_version = host.exec_ok(&["/usr/bin/steward", "--version"]);
    assert_eq!(cli_version.trim(), format!("steward {version}"));
    // The packaged unit runs the packaged agent, as the etcd user.
    // The package's unit (/lib is /usr/lib on Debian 12), not one in /etc.
    let fragment = host.unit_property("steward-agent", "FragmentPath");
    assert!(
        [
            "/usr/lib/systemd/system/steward-agent.service",
            "/lib/systemd/system/steward-agent.service"
        ]
        .contains(&fragment.as_str()),
        "{fragment}"
    );
    assert_eq!(host.unit_property("steward-agent", "User"), "etcd");
    assert!(
        host.unit_property("steward-agent", "ExecStart")
            .contains("path=/usr/bin/steward-agent"),
        "{}",
        host.unit_property("steward-agent", "ExecStart")
    );
    assert_eq!(host.unit_property("steward-agent", "ActiveState"), "active");
    let state = host.exec_ok(&["stat", "-c", "%U %a", "/var/lib/steward", "/etc/steward/pki"]);
    assert_eq!(state.lines().collect::<Vec<_>>(), ["etcd 700", "root 750"]);

    // The cluster the packaged agents run answers steward.
    let status = testbed.steward(&["status", "--cluster", &testbed.cluster_file(), "-w", "json"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let members = view["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{view:#}");
    assert!(members.iter().all(|m| m["healthy"] == true), "{view:#}");

    // The CLI package: its user, its units not enabled, man pages and
    // completions.
    let _ = host.exec_ok(&["id", "steward-backup"]);
    let timer = host.exec(&["systemctl", "is-enabled", "steward-backup.timer"]);
    assert_eq!(String::from_utf8_lossy(&timer.stdout).trim(), "disabled");
    for file in [
        "usr/share/man/man1/steward.1.gz",
        "usr/share/man/man1/steward-upgrade.1.gz",
        "usr/share/bash-completion/completions/steward",
        "usr/share/zsh/vendor-completions/_steward",
        "usr/share/fish/vendor_completions.d/steward.fish",
        "usr/lib/systemd/system/steward-backup.service",
    ] {
        assert!(host.root().join(file).is_file(), "{file} is missing");
    }
    let backup_unit = std::fs::read_to_string(host.root().join("usr/lib/systemd/system/steward-backup.service"))
        .expect("the backup unit");
    assert!(
        backup_unit.contains("ExecStart=/usr/bin/steward backup"),
        "{backup_unit}"
    );

    // Reinstalling the agent package (an upgrade) restarts the agent, which
    // adopts the running etcd: etcd's pid stays.
    let etcd_before = host.pid_of("etcd");
    let agent_before = host.pid_of("steward-agent");
    let package = host
        .exec_ok(&["sh", "-c", "ls /opt/steward-install/steward-agent_*.deb"])
        .trim()
        .to_owned();
    let _ = host.exec_ok(&["dpkg", "-i", &package]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.pids_named("steward-agent").first() == Some(&agent_before)
        || host.unit_property("steward-agent", "ActiveState") != "active"
    {
        assert!(Instant::now() < deadline, "the agent was not restarted by the upgrade");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        host.pid_of("etcd"),
        etcd_before,
        "etcd kept running through the agent's upgrade"
    );
    testbed.wait_healthy(Duration::from_secs(60)).await;

    // Removing the CLI package removes its files; the agent's stay.
    let _ = host.exec_ok(&["dpkg", "--purge", "steward"]);
    assert!(!host.root().join("usr/bin/steward").exists());
    assert!(host.root().join("usr/bin/steward-agent").exists());
}
