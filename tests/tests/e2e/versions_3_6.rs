//! The releases users run today, built from etcd's Go modules by
//! scripts/setup-etcd: the newest 3.5 patch up to the newest 3.6 patch (the
//! 3.6 upgrade guide's path) on three and on five members, and back down
//! through the Downgrade API (the 3.6 downgrade guide: enable, wait for
//! every member's storage version, swap the binaries leader last). Each
//! runs under a writer that fails over between members; every acknowledged
//! key is read back and HashKV agrees at the end.

use steward_coordinator::engine::events::Event;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::rules::Verdict;
use steward_tests::faults::event_name;
use steward_tests::rolling::{assert_all_on, assert_every_etcd_runs_with, roll_under_writer};
use steward_tests::{Cluster, ClusterBuilder, Release, binaries::binaries_dir, newest};

/// Runs `steward <command> --agents ... --to <to>` with `extra` arguments.
fn steward_to(command: &str, cluster: &Cluster, to: &Release, extra: &[&str]) -> std::process::Output {
    let (agents, to) = (cluster.agents_arg(), to.version.to_string());
    let mut args = vec![command, "--agents", &agents, "--to", &to];
    args.extend_from_slice(extra);
    steward_tests::cluster::steward(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_3_5_goes_to_3_6_and_back_through_the_downgrade_api() {
    let from = newest(3, 5);
    let to = newest(3, 6);
    // Written the 3.5 way: the agents render them for each release.
    let cluster = ClusterBuilder::new(3, from.clone())
        .extra_flag("--experimental-compaction-batch-limit=500")
        .extra_flag("--experimental-initial-corrupt-check=true")
        .start()
        .await;

    let up = roll_under_writer(&cluster, Direction::Upgrade, &to, "up/").await;
    assert_all_on(&cluster, &to.version, "3.6.0").await;
    assert_every_etcd_runs_with(
        &cluster,
        &[
            "--compaction-batch-limit=500",
            "--feature-gates=InitialCorruptCheck=true",
        ],
    )
    .await;
    let v2store = up.iter().find_map(|e| match e {
        Event::Check(check) if check.rule == "3.6-v2store-clean" => Some(check.clone()),
        _ => None,
    });
    let v2store = v2store.expect("the v2store check runs before 3.6");
    assert_eq!(v2store.verdict, Verdict::Pass, "{v2store:?}");
    assert!(v2store.message.contains("3 members"), "{v2store:?}");
    let leader_moves = up.iter().filter(|e| event_name(e) == "leader_moved").count();
    assert_eq!(leader_moves, 1, "the leader is moved once, and changed last");

    let down = roll_under_writer(&cluster, Direction::Downgrade, &from, "down/").await;
    assert_all_on(&cluster, &from.version, "3.5.0").await;
    assert_every_etcd_runs_with(
        &cluster,
        &[
            "--experimental-compaction-batch-limit=500",
            "--experimental-initial-corrupt-check=true",
        ],
    )
    .await;
    let names: Vec<String> = down.iter().map(event_name).collect();
    let enabled = names.iter().position(|n| n == "downgrade_enabled");
    let migrated = names.iter().position(|n| n == "storage_migrated");
    let first_member = names.iter().position(|n| n == "member_started");
    assert_eq!(
        names.iter().filter(|n| *n == "leader_moved").count(),
        1,
        "the leader is moved once, and swapped last: {names:?}"
    );
    assert!(
        enabled.is_some() && migrated > enabled && first_member > migrated,
        "the Downgrade API is enabled and every storage version reaches 3.5 before any binary is swapped: {names:?}"
    );
    cluster.cleanup();
}

/// 3.4 -> 3.6 is one `steward upgrade` of two passes, through the newest
/// 3.5 patch, with the v2store check when the 3.5 -> 3.6 pass begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_4_cluster_reaches_3_6_in_one_upgrade_of_two_passes() {
    let from = newest(3, 4);
    let to = newest(3, 6);
    let cluster = ClusterBuilder::new(3, from).start().await;
    let events = roll_under_writer(&cluster, Direction::Upgrade, &to, "two-passes/").await;
    assert_all_on(&cluster, &to.version, "3.6.0").await;

    let planned = events.iter().find_map(|e| match e {
        Event::Planned { passes, .. } => Some(passes.clone()),
        _ => None,
    });
    let middle = newest(3, 5).version.to_string();
    assert_eq!(planned, Some(vec![middle.clone(), to.version.to_string()]));
    let first_pass_done = events
        .iter()
        .position(|e| matches!(e, Event::PassDone { target } if *target == middle))
        .expect("the 3.5 pass is done");
    let v2store = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Check(check) if check.rule == "3.6-v2store-clean" => Some((i, check.clone())),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        v2store.len(),
        2,
        "deferred in the preflight, run when the pass begins: {v2store:?}"
    );
    assert!(
        v2store[0]
            .1
            .message
            .contains("checked when the 3.5 -> 3.6 pass begins, after the passes before it")
    );
    assert!(
        v2store[1].0 > first_pass_done && v2store[1].1.verdict == Verdict::Pass,
        "{v2store:?}"
    );
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_go_from_the_newest_3_5_to_3_6() {
    let from = newest(3, 5);
    let to = newest(3, 6);
    let cluster = ClusterBuilder::new(5, from).start().await;
    let _ = roll_under_writer(&cluster, Direction::Upgrade, &to, "five/").await;
    assert_all_on(&cluster, &to.version, "3.6.0").await;
    cluster.cleanup();
}

/// A 3.5 patch older than the 3.6 guide's minimum: with only a 3.6 binary
/// the upgrade is refused before anything changes, naming the rule; with
/// the binaries directory the plan goes through the newest 3.5 patch first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_3_5_patch_is_refused_for_3_6_and_the_plan_adds_the_patch_pass() {
    let old = steward_tests::exact("3.5.16");
    let to = newest(3, 6);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let only_3_6 = binaries_dir().join(to.version.to_string()).join("etcd");
    let out = steward_to("upgrade", &cluster, &to, &["--binary", &only_3_6.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("3.6-needs-3.5.32") && stderr.contains("3.5.16"),
        "the refusal names the rule and the running patch: {stderr}"
    );
    assert_all_on(&cluster, &old.version, "3.5.0").await;

    let binaries = binaries_dir().display().to_string();
    let out = steward_to("plan", &cluster, &to, &["--binaries", &binaries, "-w", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let targets: Vec<&str> = plan["passes"]
        .as_array()
        .expect("passes")
        .iter()
        .map(|p| p["target"].as_str().expect("target"))
        .collect();
    let newest_3_5 = newest(3, 5).version.to_string();
    assert_eq!(
        targets,
        [newest_3_5.as_str(), &to.version.to_string()],
        "the patch pass comes first: {stdout}"
    );
    cluster.cleanup();
}

/// Custom v2 data (written through the v2 API 3.5 serves with
/// `--enable-v2`) refuses the 3.6 upgrade before anything changes, naming
/// every member, etcdutl's verdict and the guide's remedy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_v2_data_is_refused_by_the_v2store_check() {
    let from = newest(3, 5);
    let to = newest(3, 6);
    let cluster = ClusterBuilder::new(3, from.clone())
        .extra_flag("--enable-v2=true")
        .start()
        .await;
    v2_put(&cluster.members[0].client_url, "custom", "v2 data").await;

    let out = steward_to(
        "upgrade",
        &cluster,
        &to,
        &["--binaries", &binaries_dir().display().to_string()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("3.6-v2store-clean"))
        .unwrap_or_else(|| panic!("no v2store check in: {stderr}"));
    for member in &cluster.members {
        assert!(
            line.contains(&format!("{}: detected custom", member.name)),
            "{} is named: {line}",
            member.name
        );
    }
    assert!(line.contains("write-only-skip-check"), "the guide's remedy: {line}");
    assert_all_on(&cluster, &from.version, "3.5.0").await;
    cluster.cleanup();
}

/// One v2 API write (`PUT /v2/keys/<key>`), over plain HTTP/1.1.
async fn v2_put(client_url: &str, key: &str, value: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = client_url.trim_start_matches("http://").trim_end_matches('/');
    let body = format!("value={}", value.replace(' ', "+"));
    let request = format!(
        "PUT /v2/keys/{key} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the v2 API");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(
        response.starts_with("HTTP/1.1 201") || response.starts_with("HTTP/1.1 200"),
        "the v2 write is acknowledged: {response}"
    );
}
