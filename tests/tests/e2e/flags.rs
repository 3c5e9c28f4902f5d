//! CheckFlags and Activate apply the flag rules of the etcd guides to real
//! members: `--ca-file` becomes `--trusted-ca-file` on a 3.3 -> 3.4 switch
//! (3.4 refuses to start with `--ca-file`), and the 3.5 -> 3.4 downgrade
//! rules add, rename, pin and refuse.

use steward_proto::v1 as pb;
use steward_proto::v1::flag_change::Kind;
use steward_tests::{ClusterBuilder, exact, newest};

/// A CA bundle that exists on every Debian machine; etcd 3.3 does not read
/// it while the member serves plain http, but the flag must still be right.
const CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_is_renamed_and_the_member_runs_3_4() {
    let old = exact("3.3.25");
    let new = newest(3, 4);
    let cluster = ClusterBuilder::new(1, old.clone())
        .extra_flag(&format!("--ca-file={CA_FILE}"))
        .start()
        .await;
    let mut agent = cluster.agent(0).await;
    let check = agent
        .check_flags(pb::CheckFlagsRequest {
            target_version: new.version.to_string(),
            from_version: String::new(),
        })
        .await
        .expect("check flags")
        .into_inner();
    assert_eq!(check.current_version, old.version.to_string());
    assert!(
        check.current_args.contains(&format!("--ca-file={CA_FILE}")),
        "{:?}",
        check.current_args
    );
    assert!(
        check.target_args.contains(&format!("--trusted-ca-file={CA_FILE}")),
        "{:?}",
        check.target_args
    );
    assert!(!check.target_args.iter().any(|a| a.starts_with("--ca-file")));
    assert!(!check.refused);
    let change = check
        .changes
        .iter()
        .find(|c| c.flag == "--ca-file")
        .expect("a change for --ca-file");
    assert_eq!(change.kind(), Kind::Renamed);
    assert_eq!(change.new_flag, "--trusted-ca-file");
    assert_eq!(change.rule, "flags-3.4-trusted-ca-file");

    // 3.4 refuses --ca-file outright, so this only works with the rule.
    cluster.import_etcd(0, &new.etcd(), &new.version.to_string()).await;
    let activated = agent
        .activate(pb::ActivateRequest {
            version: new.version.to_string(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .unwrap_or_else(|s| panic!("activate 3.4: {s}; {}", cluster.logs_hint()))
        .into_inner();
    assert!(activated.args.contains(&format!("--trusted-ca-file={CA_FILE}")));
    let status = cluster.status(0).await;
    assert_eq!(status.member.unwrap_or_default().version, new.version.to_string());
    let args = status.process.unwrap_or_default().args;
    assert!(args.contains(&format!("--trusted-ca-file={CA_FILE}")), "{args:?}");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_rules_from_3_5_to_3_4() {
    let release = newest(3, 5);
    let cluster = ClusterBuilder::new(1, release.clone())
        .extra_flag("--backend-bbolt-freelist-type=map")
        .extra_flag("--socket-reuse-port=true")
        .start()
        .await;
    let mut agent = cluster.agent(0).await;
    let check = |target: &str| {
        let mut agent = agent.clone();
        let target = target.to_owned();
        async move {
            agent
                .check_flags(pb::CheckFlagsRequest {
                    target_version: target,
                    from_version: String::new(),
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };

    // 3.4.32 and later: allowed, with the guide's changes.
    let ok = check("3.4.33").await.expect("check 3.4.33");
    assert!(!ok.refused, "{:?}", ok.changes);
    for arg in [
        "--next-cluster-version-compatible",
        "--pre-vote=true",
        "--logger=zap",
        "--experimental-backend-bbolt-freelist-type=map",
    ] {
        assert!(
            ok.target_args.iter().any(|a| a == arg),
            "{arg} missing from {:?}",
            ok.target_args
        );
    }
    assert!(!ok.target_args.iter().any(|a| a.contains("socket-reuse-port")));
    let rules: Vec<&str> = ok.changes.iter().map(|c| c.rule.as_str()).collect();
    for rule in [
        "downgrade-3.4-next-cluster-version-compatible",
        "downgrade-3.4-pre-vote",
        "downgrade-3.4-logger",
        "flags-3.4-bbolt-freelist",
        "flags-3.4-not-available",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }

    // Below 3.4.32: refused, naming the rule.
    let refused = check("3.4.23").await.expect("check 3.4.23");
    assert!(refused.refused);
    assert!(
        refused
            .changes
            .iter()
            .any(|c| c.kind() == Kind::Refused && c.rule == "downgrade-3.4-min-3.4.32")
    );

    // Two minors away: refused.
    let skip = check("3.3.25").await.expect("check 3.3.25");
    assert!(skip.refused);
    assert!(skip.changes.iter().any(|c| c.rule == "version-adjacent-minors"));

    // A malformed version names the field.
    let bad = check("3.4").await.expect_err("3.4 is not a version");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("target_version"), "{}", bad.message());

    // Activate obeys the same refusal, and changes nothing.
    let pid = cluster.status(0).await.process.unwrap_or_default().pid;
    let status = agent
        .activate(pb::ActivateRequest {
            version: "3.4.23".into(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("downgrade-3.4-min-3.4.32"),
        "{}",
        status.message()
    );
    let after = cluster.status(0).await;
    assert_eq!(after.process.unwrap_or_default().pid, pid);
    assert_eq!(after.versions.unwrap_or_default().active, release.version.to_string());
    cluster.cleanup();
}
