//! The `steward` binary as an operator runs it: help text, usage errors and
//! an unreachable agent, checked by exit code and message. No etcd and no
//! agent are needed.

// Test code: a failed expectation is a failed test, not an error to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        // The tests decide the address themselves.
        .env_remove("STEWARD_AGENT")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the steward binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_agent_subcommands_and_exit_codes() {
    let output = steward(&["agent", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for command in [
        "status",
        "binaries",
        "import",
        "upload",
        "flags",
        "activate",
        "rollback",
        "start",
        "stop",
        "restart",
        "snapshot",
        "snapshots",
        "download",
        "logs",
    ] {
        assert!(
            help.lines().any(|line| line.trim_start().starts_with(command)),
            "{command} missing from:\n{help}"
        );
    }
    assert!(help.contains("Exit codes"), "{help}");

    let top = text(&steward(&["--help"]).stdout);
    assert!(top.contains("agent"), "{top}");
    assert!(top.contains("3  refused by a check"), "{top}");
}

#[test]
fn a_malformed_version_is_a_usage_error_naming_the_flag() {
    let output = steward(&["agent", "activate", "--agent", "127.0.0.1:1", "--to", "3.5"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--to"), "{stderr}");
    assert!(stderr.contains("MAJOR.MINOR.PATCH"), "{stderr}");
    assert!(output.stdout.is_empty());
}

const SHA_ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn other_malformed_inputs_are_usage_errors() {
    let cases: [&[&str]; 7] = [
        &["agent", "status", "--agent", "https://127.0.0.1:1"],
        // --sha256 pins the --binary file; alone it means nothing.
        &[
            "upgrade",
            "--agents",
            "127.0.0.1:1",
            "--to",
            "3.5.16",
            "--sha256",
            SHA_ZEROS,
        ],
        &[
            "upgrade",
            "--agents",
            "127.0.0.1:1",
            "--to",
            "3.5.16",
            "--binary",
            "/x/etcd",
            "--sha256",
            "abc",
        ],
        &[
            "agent",
            "import",
            "--agent",
            "127.0.0.1:1",
            "--path",
            "/x",
            "--version",
            "3.5.16",
            "--sha256",
            "abc",
        ],
        &[
            "agent",
            "upload",
            "--agent",
            "127.0.0.1:1",
            "--file",
            "/no/such/file",
            "--version",
            "3.5.16",
        ],
        &["agent", "rollback", "--agent", "127.0.0.1:1", "--timeout", "soon"],
        &["agent", "logs", "--agent", "127.0.0.1:1", "--lines", "0"],
    ];
    for args in cases {
        let output = steward(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

#[test]
fn an_unreachable_agent_fails_naming_the_address() {
    let output = steward(&["agent", "status", "--agent", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("steward: cannot reach agent 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn the_agent_address_can_come_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["agent", "snapshots"])
        .env("STEWARD_AGENT", "http://127.0.0.1:1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the steward binary");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(text(&output.stderr).contains("127.0.0.1:1"));
}

#[test]
fn agent_logs_takes_json_output() {
    // Accepted (not a usage error): it fails only because nothing listens.
    let output = steward(&["agent", "logs", "--agent", "127.0.0.1:1", "-w", "json", "--follow"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(text(&output.stderr).contains("127.0.0.1:1"));
    // Under -w json a failure is a JSON object on stdout too.
    let error: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(error["error"]["exit_code"], 1, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:1")),
        "{error}"
    );

    let help = text(&steward(&["agent", "logs", "--help"]).stdout);
    assert!(help.contains("--write-out"), "{help}");
    assert!(help.contains("NDJSON"), "{help}");
}
