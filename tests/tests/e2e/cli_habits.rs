//! The command line's habits, on a real cluster behind mutual TLS: the
//! connection and output flags before or after the subcommand, `status`
//! within 120 columns unless `-w wide`, one JSON
//! document on stdout under `-w json` even when the command fails, agent
//! addresses whose scheme must agree with the caller's TLS, `--san` required
//! for an agent certificate, and completions and man pages generated.

use std::process::Output;

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, newest};

fn steward(args: &[&str]) -> Output {
    steward_command().args(args).output().expect("run steward")
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_go_anywhere_and_json_failures_are_json() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let mut names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    names.sort();

    // The same command with its flags after, before, and on both sides of
    // the subcommand gives the same members.
    let orders: [&[&str]; 3] = [
        &["status", "--agents", &agents, "-w", "json"],
        &["--agents", &agents, "-w", "json", "status"],
        &["-wjson", "status", &format!("--agents={agents}")],
    ];
    for args in orders {
        let output = steward(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        let status = stdout_json(&output);
        let mut seen: Vec<String> = status["members"]
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: {status:#}"))
            .iter()
            .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        seen.sort();
        assert_eq!(seen, names, "{args:?}");
    }

    // The default table fits 120 columns; -w wide has every column.
    let output = steward(&["status", "--agents", &agents]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    for line in table.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} columns:\n{table}",
            line.chars().count()
        );
    }
    for name in &names {
        assert!(table.contains(name.as_str()), "{table}");
    }
    assert!(!table.contains("STAGED"), "{table}");
    let output = steward(&["-w", "wide", "status", "--agents", &agents]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let wide = String::from_utf8_lossy(&output.stdout).into_owned();
    for column in ["ID", "TERM", "AGENT STATE", "STAGED", "DB / IN USE"] {
        assert!(wide.contains(column), "{column}: {wide}");
    }

    // Every agent's steward version beside this CLI's, no skew here.
    let output = steward(&["version", "--agents", &agents, "-w", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let versions = stdout_json(&output);
    let own = versions["steward"].as_str().expect("the CLI's version").to_owned();
    let listed = versions["agents"].as_array().expect("agents");
    assert_eq!(listed.len(), 3, "{versions:#}");
    assert!(listed.iter().all(|a| a["version"] == own.as_str()), "{versions:#}");
    assert!(
        listed
            .iter()
            .all(|a| a["etcd_version"] == newest(3, 5).version.to_string().as_str()),
        "{versions:#}"
    );
    assert_eq!(versions["skew"].as_array().map(Vec::len), Some(0), "{versions:#}");
    assert!(!stderr(&output).contains("skew"), "{}", stderr(&output));

    // A failure under -w json: the text on stderr, the object on stdout.
    let output = steward(&["-w", "json", "backup", "--agents", &agents, "--member", "nosuch"]);
    let code = output.status.code().expect("an exit code");
    assert_ne!(code, 0);
    let error = stdout_json(&output);
    assert_eq!(error["error"]["exit_code"], code, "{error:#}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nosuch"),
        "{error:#}"
    );
    assert!(error["error"]["meaning"].is_string(), "{error:#}");
    assert!(stderr(&output).contains("nosuch"), "{}", stderr(&output));
    // A usage error too.
    let output = steward(&["-w", "json", "status", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    let error = stdout_json(&output);
    assert_eq!(error["error"]["exit_code"], 2, "{error:#}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--no-such-flag"),
        "{error:#}"
    );
    // Without -w json nothing is written to stdout on failure.
    let output = steward(&["backup", "--agents", &agents, "--member", "nosuch"]);
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));

    // Under mutual TLS, https:// is the agents' scheme and http:// is refused.
    let https: Vec<String> = agents.split(',').map(|a| format!("https://{a}")).collect();
    let output = steward(&["backups", "--agents", &https.join(","), "-w", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let http: Vec<String> = agents.split(',').map(|a| format!("http://{a}")).collect();
    let output = steward(&["backups", "--agents", &http.join(","), "-w", "json"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("http:// means plaintext, but this caller has agent TLS"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout_json(&output)["error"]["exit_code"], 2);
    // And https:// without an identity is refused before any connection.
    let output = steward_command()
        .env_remove("STEWARD_AGENT_CACERT")
        .env_remove("STEWARD_AGENT_CERT")
        .env_remove("STEWARD_AGENT_KEY")
        .args(["agent", "status", "--agent", &https[0]])
        .output()
        .expect("run steward");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("https:// needs"), "{}", stderr(&output));
}

#[test]
fn an_agent_certificate_needs_a_san_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("a directory");
    let ca = dir.path().display().to_string();
    let init = steward(&["certs", "init", "--dir", &ca]);
    assert_eq!(init.status.code(), Some(0), "{}", stderr(&init));
    let output = steward(&["certs", "issue", "--dir", &ca, "--role", "agent", "--name", "infra0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--san"), "{}", stderr(&output));
    assert!(!dir.path().join("infra0.key").exists());
    // A client certificate needs none.
    let output = steward(&["certs", "issue", "--dir", &ca, "--role", "reader", "--name", "ops"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = steward(&["completion", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}: {}", stderr(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["upgrade", "restore", "agent-cacert"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let output = steward(&["completion", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));

    let dir = tempfile::tempdir().expect("a directory");
    let man = dir.path().join("man1");
    let output = steward(&["man", "--dir", &man.display().to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let backup = std::fs::read_to_string(man.join("steward-backup.1")).expect("steward-backup.1");
    assert!(backup.contains("\\-\\-out"), "{backup}");
    assert!(man.join("steward.1").exists());
    assert!(man.join("steward-agent-status.1").exists());
}
