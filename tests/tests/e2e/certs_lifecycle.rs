//! Certificates over time: `steward certs check` lists every certificate
//! of a directory with its expiry and fails naming those inside the
//! threshold; `steward certs renew` gives one a new key and validity with
//! the same name, role and names, which its agent serves after a restart.

use std::process::Output;

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, newest};

fn steward(args: &[&str]) -> Output {
    steward_command().args(args).output().expect("run steward")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_names_what_expires_and_renew_replaces_it() {
    let dir = tempfile::tempdir().expect("a dir");
    let pki = dir.path().display().to_string();
    let ok = |output: Output| {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        output
    };
    ok(steward(&["certs", "init", "--dir", &pki]));
    ok(steward(&[
        "certs",
        "issue",
        "--dir",
        &pki,
        "--role",
        "agent",
        "--name",
        "infra0",
        "--san",
        "10.0.0.1",
        "--san",
        "infra0.example",
        "--days",
        "10",
    ]));
    ok(steward(&[
        "certs", "issue", "--dir", &pki, "--role", "backup", "--name", "nightly",
    ]));

    // Within 30 days (the default): exit 1, naming the agent's certificate.
    let checked = steward(&["certs", "check", "--dir", &pki, "-w", "json"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    assert!(
        stderr(&checked).contains("infra0.crt (infra0, "),
        "{}",
        stderr(&checked)
    );
    assert!(!stderr(&checked).contains("nightly"), "{}", stderr(&checked));
    let view: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("JSON");
    let soonest = &view["certificates"][0];
    assert_eq!(soonest["name"], "infra0", "{view:#}");
    assert_eq!(soonest["expiry"], "soon", "{view:#}");
    assert!(
        soonest["days_left"].as_u64().is_some_and(|d| (9..=10).contains(&d)),
        "{view:#}"
    );
    // A threshold it is outside of: fine.
    ok(steward(&["certs", "check", "--dir", &pki, "--within", "5days"]));

    // Renewed: same role and names, a new key, a year, the old pair kept.
    let old_key = std::fs::read(dir.path().join("infra0.key")).expect("the old key");
    let renewed = ok(steward(&[
        "certs", "renew", "--dir", &pki, "--name", "infra0", "-w", "json",
    ]));
    let renewed: serde_json::Value = serde_json::from_slice(&renewed.stdout).expect("JSON");
    assert_eq!(renewed["role"], "agent");
    assert_eq!(renewed["sans"], serde_json::json!(["10.0.0.1", "infra0.example"]));
    assert_ne!(
        std::fs::read(dir.path().join("infra0.key")).expect("the new key"),
        old_key
    );
    for kept in renewed["previous"].as_array().expect("previous") {
        assert!(std::path::Path::new(kept.as_str().expect("a path")).exists(), "{kept}");
    }
    ok(steward(&["certs", "check", "--dir", &pki]));

    // The CA is not renewed this way, nor a file that is no certificate.
    let refused = steward(&["certs", "renew", "--dir", &pki, "--name", "nosuch"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}

/// Days from now until `not_after`.
fn days_until(not_after: Option<&prost_types::Timestamp>) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let end = not_after.expect("an end").seconds;
    (end - i64::try_from(now).expect("a time")) / 86_400
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_agent_certificate_is_served_after_the_agents_restart() {
    let mut cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let pki = cluster.pki.clone().expect("mutual TLS").dir;
    let pki_text = pki.display().to_string();

    // What m0's agent serves: the harness's certificate, 30 days.
    let served = cluster
        .status(0)
        .await
        .agent
        .expect("agent")
        .tls_certificate
        .expect("served");
    assert!(
        served.subject.contains("CN=m0") && served.subject.contains("OU=agent"),
        "{served:?}"
    );
    assert_eq!(served.sans, vec!["127.0.0.1".to_owned()]);
    assert!((29..=30).contains(&days_until(served.not_after.as_ref())), "{served:?}");

    // Renewed for 90 days: the agent goes on serving the old one until it
    // restarts, then serves the new one, and steward still reaches it.
    let renewed = steward(&["certs", "renew", "--dir", &pki_text, "--name", "m0", "--days", "90"]);
    assert_eq!(renewed.status.code(), Some(0), "{}", stderr(&renewed));
    let before = cluster
        .status(0)
        .await
        .agent
        .expect("agent")
        .tls_certificate
        .expect("served");
    assert_eq!(before, served, "read at the agent's start only");
    cluster.kill_agent(0);
    cluster.start_agent(0);
    let after = cluster
        .status(0)
        .await
        .agent
        .expect("agent")
        .tls_certificate
        .expect("served");
    assert!((89..=90).contains(&days_until(after.not_after.as_ref())), "{after:?}");
    assert_eq!(after.subject, served.subject);
    assert_eq!(after.sans, served.sans);
    let status = steward(&["status", "--agents", &cluster.agents_arg()]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));

    // `certs check --cluster`: m1's and m2's 30-day certificates are inside
    // the default threshold, m0's renewed one is not.
    let agents = cluster.agents_arg();
    let checked = steward(&["certs", "check", "--agents", &agents, "-w", "json"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    let named = stderr(&checked);
    assert!(
        named.contains("agent of m1 (") && named.contains("agent of m2 (") && !named.contains("agent of m0 ("),
        "{named}"
    );
    let checked = steward(&["certs", "check", "--agents", &agents, "--within", "7days", "-w", "json"]);
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    let view: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("JSON");
    let rows = view["certificates"].as_array().expect("certificates");
    let sources: Vec<&str> = rows.iter().filter_map(|r| r["source"].as_str()).collect();
    assert_eq!(rows.len(), 5, "three agents, the caller, the CA: {sources:?}");
    assert!(sources.iter().any(|s| s.starts_with("this caller: ")), "{sources:?}");
    assert!(sources.iter().any(|s| s.starts_with("the agents' CA: ")), "{sources:?}");
    let m0 = rows
        .iter()
        .find(|r| r["source"].as_str().is_some_and(|s| s.starts_with("agent of m0 (")))
        .expect("m0's row");
    assert_eq!(m0["name"], "m0");
    assert_eq!(m0["role"], "agent");
    assert!(m0["days_left"].as_u64().is_some_and(|d| (89..=90).contains(&d)), "{m0}");

    // An agent that does not answer is not a pass.
    cluster.kill_agent(2);
    let checked = steward(&["certs", "check", "--agents", &agents, "--within", "7days"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    assert!(
        stderr(&checked).contains("could not be checked: member m2: no agent answered"),
        "{}",
        stderr(&checked)
    );
}
