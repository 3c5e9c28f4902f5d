//! The coordinator SIGKILLed after every step of a roll in turn: patch
//! rolls up (3.5.16 -> newest 3.5) and back down, the k-th run killed
//! right after its k-th event (the burst of preflight checks counts as one
//! step), each followed by the same command run again, which must finish.
//! A writer runs throughout; at the end every acknowledged write is read
//! back, HashKV agrees and the member list is unchanged.

use std::time::Duration;

use steward_tests::cluster::steward_command;
use steward_tests::faults;
use steward_tests::{ClusterBuilder, Writer, coordinator, exact, lost_writes, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_after_any_event_is_finished_by_a_rerun() {
    let low = exact("3.5.16");
    let high = newest(3, 5);
    let cluster = ClusterBuilder::new(3, low.clone()).start().await;
    let agents = cluster.agents_arg();
    let ids_before = faults::member_ids(&cluster).await;
    let writer = Writer::start(cluster.all_client_urls(), "killed/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let versions = [high.version.to_string(), low.version.to_string()];
    let command = |i: usize| -> Vec<String> {
        let (verb, to) = if i.is_multiple_of(2) {
            ("upgrade", &versions[0])
        } else {
            ("downgrade", &versions[1])
        };
        ["--agents", &agents, "--to", to]
            .iter()
            .fold(vec![verb.to_owned()], |mut args, a| {
                args.push((*a).to_owned());
                args
            })
    };
    let run_to_end = |args: &[String]| {
        let output = steward_command().args(args).output().expect("run steward");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    };
    // Both versions staged everywhere first, so every run has the same
    // steps.
    run_to_end(&command(0));
    run_to_end(&command(1));

    let mut killed_after = Vec::new();
    for k in 1.. {
        let args = command(k);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let running = coordinator::start(&argv);
        let mut steps = 0;
        let mut last = String::new();
        let mut ended = false;
        while steps < k {
            let Some(line) = running.next() else {
                ended = true;
                break;
            };
            let Some(name) = line["event"].as_str() else {
                ended = true; // the report: the run finished
                break;
            };
            if name == "check" && last == "check" {
                continue;
            }
            last = name.to_owned();
            steps += 1;
        }
        if ended {
            let mut running = running;
            let status = running.child.wait().expect("steward ends");
            assert!(status.success(), "the run that was not killed failed: {status}");
            break;
        }
        running.kill();
        eprintln!("killed after step {k}: {last}");
        killed_after.push(last.clone());
        // The same command again finishes what the killed one began.
        let rerun = steward_command().args(&args).output().expect("run steward again");
        let stderr = String::from_utf8_lossy(&rerun.stderr);
        assert_eq!(
            rerun.status.code(),
            Some(0),
            "killed after step {k} ({last}), the rerun failed: {stderr}; {}",
            cluster.logs_hint()
        );
        let target = args[4].clone();
        for i in 0..3 {
            assert_eq!(cluster.status(i).await.member.unwrap_or_default().version, target);
        }
    }
    eprintln!("killed after: {}", killed_after.join(", "));
    for step in [
        "snapshot",
        "member_started",
        "activated",
        "member_done",
        "leader_moved",
        "pass_done",
    ] {
        assert!(
            killed_after.iter().any(|s| s == step),
            "a kill after {step}: {killed_after:?}"
        );
    }
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "killed/", &writes).await;
    assert!(lost.is_empty(), "lost {} acknowledged writes", lost.len());
    eprintln!(
        "writer: {} acknowledged, longest stall {:?}",
        writes.acked.len(),
        writes.longest_stall
    );
    // A killed coordinator leaves the member it was changing to its agent:
    // nothing worse than one member restart at a time.
    assert!(
        writes.longest_stall < Duration::from_secs(1),
        "a write stall of {:?}",
        writes.longest_stall
    );
    faults::assert_hash_kv_agrees(&cluster).await;
    assert_eq!(faults::member_ids(&cluster).await, ids_before);
    cluster.cleanup();
}
