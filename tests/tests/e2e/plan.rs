//! `steward plan` for 3.3 -> 3.5 on a real cluster whose spec still says
//! `--ca-file`: two passes (3.4 in between), the leader last in each, the
//! flag changes each agent reports for each pass, and every check; nothing
//! changes.

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, exact, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_from_3_3_to_3_5_shows_two_passes_the_leader_last_flags_and_checks() {
    let cluster = ClusterBuilder::new(3, exact("3.3.25"))
        .extra_flag("--ca-file=/etc/ssl/certs/ca-certificates.crt")
        .start()
        .await;
    let agents = cluster.agents_arg();
    let middle = newest(3, 4);
    let end = newest(3, 5);
    let leader = cluster.members[cluster.leader_index().await].name.clone();

    let out = steward_command()
        .args([
            "plan",
            "--agents",
            &agents,
            "--to",
            &end.version.to_string(),
            "-w",
            "json",
        ])
        .output()
        .expect("run steward plan");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");

    let passes = plan["passes"].as_array().expect("passes");
    assert_eq!(passes.len(), 2, "{plan}");
    assert_eq!(passes[0]["target"], middle.version.to_string());
    assert_eq!(passes[1]["target"], end.version.to_string());
    for pass in passes {
        let order = pass["order"].as_array().expect("order");
        assert_eq!(order.len(), 3);
        assert_eq!(order[2]["member"], leader.as_str(), "the leader goes last: {pass}");
        assert_eq!(order[2]["leader"], true);
        assert!(order.iter().all(|s| s["done"] == false));
    }
    // Pass 1 renames --ca-file on every member; pass 2 (from 3.4) has
    // nothing left to rename.
    for step in passes[0]["order"].as_array().expect("order") {
        let changes = step["flag_changes"].as_array().expect("flag changes");
        assert!(
            changes.iter().any(|c| c["flag"] == "--ca-file"
                && c["new_flag"] == "--trusted-ca-file"
                && c["rule"] == "flags-3.4-trusted-ca-file"),
            "{step}"
        );
    }
    for step in passes[1]["order"].as_array().expect("order") {
        assert!(step["flags_error"].is_null(), "{step}");
        assert_eq!(step["flags_refused"], false, "{step}");
    }
    let checks = plan["checks"].as_array().expect("checks");
    assert!(checks.len() >= 15, "every check is listed: {}", checks.len());
    assert!(checks.iter().all(|c| c["verdict"] != "fail"), "{plan}");
    assert!(
        checks
            .iter()
            .any(|c| c["rule"] == "adjacent-minors" && c["message"].as_str().is_some_and(|m| m.contains("2 pass"))),
        "{plan}"
    );
    assert_eq!(plan["refused"], false);

    // The table form lists both passes and the checks, and nothing changed.
    let table = steward_command()
        .args(["plan", "--agents", &agents, "--to", &end.version.to_string()])
        .output()
        .expect("run steward plan");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("PASS 1 -> {}", middle.version)) && text.contains(&format!("PASS 2 -> {}", end.version)),
        "{text}"
    );
    assert!(text.contains("goes last, after MoveLeader"), "{text}");
    for i in 0..3 {
        assert_eq!(cluster.status(i).await.member.unwrap_or_default().version, "3.3.25");
    }
    cluster.cleanup();
}
