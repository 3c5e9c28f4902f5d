//! Scheduled backups as shipped: `deploy/steward-backup.service` and its
//! timer installed on a real host under systemd, with the CLI, the cluster
//! file and a `backup` certificate, as the deploy guide lays them out. The
//! service, started by hand as the timer would, leaves a verified snapshot
//! in its state dir and removes the oldest beyond the count it is given.

use std::path::Path;

use steward_tests::cluster::steward_binary;
use steward_tests::hosts::{Host, TestbedBuilder, repo_root};
use steward_tests::newest;

fn install(host: &Host, from: &Path, to: &str, mode: u32) {
    let target = host.root().join(to.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::copy(from, &target).unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), target.display()));
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("mode");
}

fn backups(host: &Host) -> Vec<String> {
    let dir = host.root().join("var/lib/steward-backup");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_service_leaves_verified_snapshots_and_keeps_the_newest() {
    let testbed = TestbedBuilder::new(3, newest(3, 5)).start().await;
    let pki = testbed.dir().join("pki");
    let pki_text = pki.display().to_string();
    let issued = std::process::Command::new(steward_binary())
        .args([
            "certs", "issue", "--dir", &pki_text, "--role", "backup", "--name", "backup",
        ])
        .output()
        .expect("steward certs issue");
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));

    // As deploy/README.md lays it out, on the first host.
    let host = &testbed.hosts[0];
    let repo = repo_root();
    install(host, &steward_binary(), "/usr/local/bin/steward", 0o755);
    install(host, &pki.join("ca.crt"), "/etc/steward/backup/ca.crt", 0o644);
    install(host, &pki.join("backup.crt"), "/etc/steward/backup/backup.crt", 0o644);
    install(host, &pki.join("backup.key"), "/etc/steward/backup/backup.key", 0o640);
    install(
        host,
        &repo.join("deploy/steward-backup.sysusers"),
        "/etc/sysusers.d/steward-backup.conf",
        0o644,
    );
    let _ = host.exec_ok(&["systemd-sysusers"]);
    let _ = host.exec_ok(&["chown", "root:steward-backup", "/etc/steward/backup/backup.key"]);
    for unit in ["steward-backup.service", "steward-backup.timer"] {
        install(
            host,
            &repo.join("deploy").join(unit),
            &format!("/etc/systemd/system/{unit}"),
            0o644,
        );
    }
    let mut cluster = String::from("name = \"hosts\"\n");
    for (i, url) in testbed.client_urls().iter().enumerate() {
        cluster.push_str(&format!(
            "\n[[members]]\nname = \"m{i}\"\nagent = \"{}\"\nclient_url = \"{url}\"\n",
            testbed.agent_address(i)
        ));
    }
    std::fs::write(host.root().join("etc/steward/cluster.toml"), cluster).expect("the cluster file");
    std::fs::create_dir_all(host.root().join("etc/default")).expect("/etc/default");
    std::fs::write(
        host.root().join("etc/default/steward-backup"),
        "STEWARD_BACKUP_KEEP=2\n",
    )
    .expect("the defaults");

    for unit in ["steward-backup.service", "steward-backup.timer"] {
        let verify = host.exec(&["systemd-analyze", "verify", &format!("/etc/systemd/system/{unit}")]);
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    let _ = host.exec_ok(&["systemctl", "daemon-reload"]);
    let _ = host.exec_ok(&["systemctl", "enable", "--now", "steward-backup.timer"]);
    assert_eq!(host.unit_property("steward-backup.timer", "ActiveState"), "active");

    // Three runs, as the timer starts them: a oneshot, so start returns
    // when the run is over.
    let mut all = Vec::new();
    for run in 0..3 {
        let started = host.exec(&["systemctl", "start", "steward-backup.service"]);
        assert!(
            started.status.success(),
            "run {run}: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            host.journal(&["-u", "steward-backup.service", "-n", "30"])
        );
        assert_eq!(host.unit_property("steward-backup.service", "Result"), "success");
        for name in backups(host) {
            if !all.contains(&name) {
                all.push(name);
            }
        }
    }
    let left = backups(host);
    assert_eq!(all.len(), 3, "one new backup per run: {all:?}");
    assert_eq!(left, all[1..].to_vec(), "the newest two are kept");
    for name in &left {
        assert!(name.starts_with("hosts-") && name.ends_with(".db"), "{name}");
        let path = host.root().join("var/lib/steward-backup").join(name);
        assert!(steward_agent::snapshot::verify_file(&path).is_ok(), "{name} verifies");
        let mode = std::fs::metadata(&path).expect("a backup").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "{name} is private"
        );
    }
}
