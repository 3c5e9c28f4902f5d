//! Rolling changes on separate hosts, every agent installed by
//! `deploy/install-agent` under the shipped systemd unit: an upgrade under
//! the unit's hardening, an agent restarted by systemd in the middle of a
//! roll, a host rebooted between two rolls, a host cut from the network
//! mid-roll, and a host powered off. Each ends with every acknowledged
//! write read back and `steward status` healthy.

use std::time::{Duration, Instant};

use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::json_of as json;
use steward_tests::hosts::{Testbed, TestbedBuilder};
use steward_tests::{Writer, WriterReport, coordinator, exact, lost_writes, newest};

fn upgrade_args<'a>(cluster: &'a str, to: &'a str, binaries: &'a str) -> Vec<&'a str> {
    vec![
        "upgrade",
        "--cluster",
        cluster,
        "--to",
        to,
        "--binaries",
        binaries,
        "-w",
        "json",
    ]
}

async fn assert_no_write_lost(testbed: &Testbed, prefix: &str, report: &WriterReport) {
    let mut client = testbed.etcd().await;
    let lost = lost_writes(&mut client, prefix, report).await;
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        report.acked.len()
    );
}

fn versions(testbed: &Testbed) -> Vec<String> {
    let status = testbed.steward(&["status", "--cluster", &testbed.cluster_file(), "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    status["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| m["version"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the upgrade to `to` (a first run, or the rerun that finishes one),
/// stops `writer`, and checks that no acknowledged write was lost and that
/// every member runs `to`.
async fn upgrade_to_the_end(testbed: &Testbed, to: &str, writer: Writer, prefix: &str) {
    let binaries = binaries_dir().display().to_string();
    let report = json(&testbed.steward(&upgrade_args(&testbed.cluster_file(), to, &binaries)));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    let writes = writer.stop().await;
    assert_no_write_lost(testbed, prefix, &writes).await;
    assert_eq!(versions(testbed), vec![to.to_owned(); 3]);
}

/// Three hosts on the newest 3.4, and a writer that has begun.
async fn three_hosts_on_3_4_under_a_writer(prefix: &str) -> (Testbed, Writer) {
    let testbed = TestbedBuilder::new(3, newest(3, 4)).start().await;
    let writer = Writer::start(testbed.client_urls(), prefix).await;
    writer.wait_for_more(20, Duration::from_secs(20)).await;
    (testbed, writer)
}

/// 1. The upgrade of the guides, 3.4 -> 3.5, through the unit's sandbox,
///    with the availability probe, while a writer keeps writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_the_shipped_unit_loses_no_write() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let testbed = TestbedBuilder::new(3, old.clone()).start().await;
    let host = &testbed.hosts[0];
    assert_eq!(host.unit_property("steward-agent", "ProtectSystem"), "strict");
    assert_eq!(host.unit_property("steward-agent", "User"), "etcd");
    // etcd runs inside the agent's unit, as the etcd user.
    let etcd = host.pid_of("etcd");
    let cgroup = std::fs::read_to_string(format!("/proc/{etcd}/cgroup")).expect("etcd's cgroup");
    assert!(cgroup.contains("steward-agent.service"), "{cgroup}");

    // The deploy guide's "Check it" commands, as written (the admin
    // identity in STEWARD_AGENT_CACERT/CERT/KEY).
    let address = testbed.agent_address(0);
    let status = json(&testbed.steward(&["agent", "status", "--agent", &address, "-w", "json"]));
    assert_eq!(status["agent"]["state"], "running", "{status:#}");
    let logs = testbed.steward(&["agent", "logs", "--agent", &address, "--lines", "5", "-w", "json"]);
    let logs_text = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success(), "{logs_text}");
    for line in logs_text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(entry["agent"], address.as_str());
    }
    let unit = host.exec_ok(&["systemctl", "status", "--no-pager", "steward-agent"]);
    assert!(unit.contains("Status: \"serving;"), "{unit}");

    let cluster = testbed.cluster_file();
    let binaries = binaries_dir().display().to_string();
    let to = new.version.to_string();
    let writer = Writer::start(testbed.client_urls(), "roll").await;
    writer.wait_for_more(20, Duration::from_secs(20)).await;
    let mut args = upgrade_args(&cluster, &to, &binaries);
    args.push("--probe");
    let report = json(&testbed.steward(&args));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    assert!(
        report["probe"].is_object(),
        "the probe's figures are in the report: {report:#}"
    );
    let writes = writer.stop().await;
    assert_no_write_lost(&testbed, "roll", &writes).await;
    assert_eq!(versions(&testbed), vec![to.clone(); 3]);
    testbed.wait_healthy(Duration::from_secs(30)).await;
}

/// 3. `systemctl restart steward-agent` on a host in the middle of a roll:
///    etcd keeps running, the new agent adopts it, and the roll finishes (a
///    rerun at worst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_by_systemd_mid_roll_adopts_etcd_and_the_roll_finishes() {
    let (testbed, writer) = three_hosts_on_3_4_under_a_writer("roll").await;
    let cluster = testbed.cluster_file();
    let binaries = binaries_dir().display().to_string();
    let to = newest(3, 5).version.to_string();

    let running = coordinator::start_command(testbed.steward_command(&upgrade_args(&cluster, &to, &binaries)));
    let first = running.wait_for("member_done");
    let done = first["member"].as_str().expect("member").to_owned();
    // A host whose member is not upgraded yet.
    let host = testbed.hosts.iter().find(|h| h.name != done).expect("another host");
    let etcd_before = host.pid_inside(host.pid_of("etcd"));
    let agent_before = host.unit_property("steward-agent", "MainPID");
    let _ = host.exec_ok(&["systemctl", "restart", "steward-agent"]);
    let agent_after = host.unit_property("steward-agent", "MainPID");
    assert_ne!(agent_before, agent_after, "systemd restarted the agent");
    let (status, report) = running.finish();
    if !status.success() {
        eprintln!("the roll stopped while {} restarted its agent: {report:#}", host.name);
        let rerun = json(&testbed.steward(&upgrade_args(&cluster, &to, &binaries)));
        assert_eq!(rerun["result"], "succeeded", "{rerun:#}");
    }
    let writes = writer.stop().await;
    assert_no_write_lost(&testbed, "roll", &writes).await;
    assert_eq!(versions(&testbed), vec![to.clone(); 3]);
    // The journal says the new agent adopted the etcd that kept running.
    let journal = host.journal(&["-u", "steward-agent", "-o", "cat"]);
    assert!(
        journal.contains(&format!("adopted running etcd pid={etcd_before}")),
        "the restarted agent adopted etcd {etcd_before}:\n{journal}"
    );
    testbed.wait_healthy(Duration::from_secs(30)).await;
}

/// 4. A host rebooted between two rolls: the agent comes back with the
///    host, starts etcd, the member rejoins, and the next roll works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_rebooted_between_two_rolls_rejoins_and_the_next_roll_works() {
    let first = exact("3.4.23");
    let middle = exact("3.5.16");
    let last = newest(3, 5);
    let mut testbed = TestbedBuilder::new(3, first).start().await;
    let cluster = testbed.cluster_file();
    let binaries = binaries_dir().display().to_string();
    let to = middle.version.to_string();
    let report = json(&testbed.steward(&upgrade_args(&cluster, &to, &binaries)));
    assert_eq!(report["result"], "succeeded", "{report:#}");

    let writer = Writer::start(testbed.client_urls(), "reboot").await;
    writer.wait_for_more(20, Duration::from_secs(20)).await;
    let host = &mut testbed.hosts[1];
    let took = host.power_off().await;
    eprintln!("{} powered off in {took:?}", host.name);
    let booted = Instant::now();
    host.boot().await;
    eprintln!("{} booted in {:?}", host.name, booted.elapsed());
    testbed.wait_healthy(Duration::from_secs(60)).await;
    eprintln!("the cluster was healthy {:?} after the boot began", booted.elapsed());
    assert_eq!(versions(&testbed), vec![to.clone(); 3]);

    upgrade_to_the_end(&testbed, &last.version.to_string(), writer, "reboot").await;
}

/// 6. One host cut from the network in the middle of a roll: steward stops
///    at a gate with a message naming the member, changes nothing more,
///    and once the link is back a rerun finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_from_the_network_mid_roll_stops_the_roll_and_a_rerun_finishes() {
    let (testbed, writer) = three_hosts_on_3_4_under_a_writer("cut").await;
    let cluster = testbed.cluster_file();
    let binaries = binaries_dir().display().to_string();
    let to = newest(3, 5).version.to_string();

    let mut args = upgrade_args(&cluster, &to, &binaries);
    args.extend(["--gate-timeout", "15s"]);
    let running = coordinator::start_command(testbed.steward_command(&args));
    let first = running.wait_for("member_done");
    let done = first["member"].as_str().expect("member").to_owned();
    let cut = testbed.hosts.iter().position(|h| h.name != done).expect("another host");
    testbed.hosts[cut].link_down();
    let cut_name = testbed.hosts[cut].name.clone();
    let mut after_cut = Vec::new();
    while let Some(event) = running.next() {
        if event.get("event").is_none() {
            after_cut.push(event);
            break;
        }
        after_cut.push(event);
    }
    let report = after_cut.last().cloned().unwrap_or_default();
    assert_ne!(report["result"], "succeeded", "the roll did not go on: {report:#}");
    eprintln!("with {cut_name} cut off the roll stopped: {}", report["failure"]);
    let started: Vec<&serde_json::Value> = after_cut
        .iter()
        .filter(|e| e["event"] == "member_started" || e["event"] == "activated")
        .collect();
    assert!(
        started.iter().all(|e| e["member"] != cut_name.as_str()),
        "nothing was started on the cut host: {started:?}"
    );
    let text = report.to_string();
    assert!(
        text.contains(&cut_name),
        "the report names the member that cannot be reached: {report:#}"
    );
    running.kill();

    testbed.hosts[cut].link_up();
    // `steward status` reports the interrupted upgrade until it is finished.
    testbed.wait_members_healthy(Duration::from_secs(60)).await;
    upgrade_to_the_end(&testbed, &to, writer, "cut").await;
}

/// 7. One host powered off entirely: every changing command is refused in
///    preflight, naming the member and its agent, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powered_off_host_makes_every_changing_command_refuse() {
    let old = exact("3.4.23");
    let middle = exact("3.5.16");
    let last = newest(3, 5);
    let mut testbed = TestbedBuilder::new(3, old.clone()).start().await;
    let cluster = testbed.cluster_file();
    let binaries = binaries_dir().display().to_string();
    let now = middle.version.to_string();
    // A finished minor upgrade, so that there is something to roll back.
    let report = json(&testbed.steward(&upgrade_args(&cluster, &now, &binaries)));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    let file = testbed.dir().join("cluster.db").display().to_string();
    let _ = json(&testbed.steward(&["backup", "--cluster", &cluster, "--out", &file, "-w", "json"]));
    testbed.hosts[2].power_cut().await;
    let off = testbed.hosts[2].name.clone();
    let off_agent = testbed.agent_address(2);
    let other_agent = testbed.agent_address(0);
    let to = last.version.to_string();
    let from = old.version.to_string();

    let commands: Vec<Vec<&str>> = vec![
        upgrade_args(&cluster, &to, &binaries),
        vec![
            "downgrade",
            "--cluster",
            &cluster,
            "--to",
            &from,
            "--binaries",
            &binaries,
        ],
        vec!["rollback", "--cluster", &cluster],
        vec!["rollback", "--cluster", &cluster, "--to-snapshot", "--yes"],
        vec!["restore", "--cluster", &cluster, "--snapshot", &file, "--yes"],
    ];
    for args in &commands {
        let out = testbed.steward(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(3), "{args:?} is refused in preflight:\n{text}");
        assert!(
            text.contains(&off) && text.contains(&off_agent),
            "{args:?} names {off} and its agent {off_agent}:\n{text}"
        );
        eprintln!(
            "{} refused:\n{}",
            args[0],
            text.lines()
                .filter(|l| l.contains("FAIL") || l.starts_with("steward:"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Taking a second member down would leave no quorum.
    let stop = testbed.steward(&["agent", "stop", "--agent", &other_agent]);
    let text = String::from_utf8_lossy(&stop.stderr);
    assert_eq!(stop.status.code(), Some(3), "{text}");
    assert!(text.contains("quorum-safety"), "{text}");
    // Nothing changed on the members that run.
    let status = testbed.steward(&["status", "--cluster", &cluster, "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let running: Vec<&serde_json::Value> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["name"] != off.as_str())
        .collect();
    assert_eq!(running.len(), 2, "{status:#}");
    for member in running {
        assert_eq!(member["version"], now.as_str(), "{status:#}");
        assert_eq!(member["healthy"], true, "{status:#}");
    }
}
