//! The `steward-agent` binary refuses bad configs with a message that names
//! the file and the field, and exits non-zero; it never starts half-way.

// Test code: a failed expectation is a failed test, not an error to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_steward-agent"))
}

fn run_with_config(text: &str) -> (bool, String) {
    run_with_config_and(text, &[])
}

fn run_with_config_and(text: &str, flags: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        text.replace("STATE", &dir.path().join("state").display().to_string()),
    )
    .expect("write config");
    let output = agent()
        .arg("--config")
        .arg(&path)
        .args(flags)
        .output()
        .expect("run the agent");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const VALID_MEMBER: &str = r#"
[member]
name = "m1"
data_dir = "/tmp/never-used"
listen_client_urls = ["http://127.0.0.1:1"]
advertise_client_urls = ["http://127.0.0.1:1"]
listen_peer_urls = ["http://127.0.0.1:2"]
initial_advertise_peer_urls = ["http://127.0.0.1:2"]
initial_cluster = "m1=http://127.0.0.1:2"
"#;

#[test]
fn a_missing_config_file_is_named() {
    let output = agent()
        .args(["--config", "/nonexistent/agent.toml"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/agent.toml"), "{stderr}");
}

#[test]
fn an_invalid_field_is_named() {
    let (ok, stderr) = run_with_config(&format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"STATE\"\ninsecure = true\n[snapshots]\nretain = 0\n{VALID_MEMBER}"
    ));
    assert!(!ok);
    assert!(stderr.contains("snapshots.retain"), "{stderr}");
}

#[test]
fn an_unknown_field_is_refused() {
    let (ok, stderr) = run_with_config(&format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"STATE\"\ninsecure = true\nlisten_adress = \"x\"\n{VALID_MEMBER}"
    ));
    assert!(!ok);
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn an_initial_binary_outside_the_import_dirs_is_refused() {
    let (ok, stderr) = run_with_config(&format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"STATE\"\ninsecure = true\nimport_dirs = [\"/opt/etcd\"]\ninitial_binary = \"/usr/bin/etcd\"\n{VALID_MEMBER}"
    ));
    assert!(!ok);
    assert!(stderr.contains("initial_binary"), "{stderr}");
}

#[test]
fn without_tls_the_agent_does_not_start() {
    let (ok, stderr) = run_with_config(&format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"STATE\"\n{VALID_MEMBER}"
    ));
    assert!(!ok);
    assert!(
        stderr.contains("config field tls") && stderr.contains("mutual TLS"),
        "{stderr}"
    );
}

#[test]
fn insecure_is_refused_on_an_address_that_is_not_loopback() {
    let config = format!("listen = \"0.0.0.0:0\"\nstate_dir = \"STATE\"\n{VALID_MEMBER}");
    let (ok, stderr) = run_with_config_and(&config, &["--insecure"]);
    assert!(!ok);
    assert!(
        stderr.contains("config field insecure") && stderr.contains("0.0.0.0:0 is not one"),
        "{stderr}"
    );
    let (ok, stderr) = run_with_config(&format!(
        "listen = \"10.1.2.3:7400\"\nstate_dir = \"STATE\"\ninsecure = true\n{VALID_MEMBER}"
    ));
    assert!(!ok);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[test]
fn version_and_help_work() {
    let output = agent().arg("--version").output().expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = agent().arg("--help").output().expect("run");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
}
