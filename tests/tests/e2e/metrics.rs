//! The agent's Prometheus metrics and `/healthz`, scraped from real agents
//! while their etcd is killed and restarted: `etcd_up`, the state, the
//! restart count and the health (gRPC and HTTP) follow; calls, refusals and
//! snapshots are counted; certificate expiries are those of the files; and
//! the listener serves HTTPS with the agent's certificate when asked.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use steward_proto::v1 as pb;
use steward_tests::cluster::ChannelIdentity;
use steward_tests::{Cluster, ClusterBuilder, newest};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The value of one series (`name` or `name{labels}`, as written) in a
/// scrape; `None` when the scrape has no such series.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("the body"))
}

fn metrics_url(cluster: &Cluster, i: usize, scheme: &str, path: &str) -> String {
    let address = cluster.members[i].metrics_addr.as_ref().expect("a metrics listener");
    format!("{scheme}://{address}{path}")
}

async fn member_health(cluster: &Cluster) -> ServingStatus {
    HealthClient::new(cluster.channel(0).await)
        .check(HealthCheckRequest {
            service: "steward.agent.v1.Member".into(),
        })
        .await
        .expect("the member's gRPC health")
        .into_inner()
        .status()
}

/// Scrapes until `done` holds for the scrape, the `/healthz` answer and the
/// member's gRPC health, or fails after 30 s showing the last of each.
async fn scrape_until(
    cluster: &Cluster,
    what: &str,
    done: impl Fn(&str, u16, ServingStatus) -> bool,
) -> (String, u16, String) {
    let client = plain_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = get(&client, &metrics_url(cluster, 0, "http", "/metrics")).await;
        let (health, line) = get(&client, &metrics_url(cluster, 0, "http", "/healthz")).await;
        let grpc = member_health(cluster).await;
        if done(&text, health, grpc) {
            return (text, health, line);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: /healthz {health} {line:?}, gRPC {grpc:?}, scrape:\n{text}\n{}",
            cluster.logs_hint()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_etcd_killed_and_restarted() {
    // A restart waits 3 s, long enough to see the member down.
    let cluster = ClusterBuilder::new(1, newest(3, 5))
        .metrics(false)
        .supervision("restart_backoff_initial", "\"3s\"")
        .start()
        .await;

    let (before, health, line) = scrape_until(&cluster, "a serving member", |text, health, grpc| {
        value(text, "steward_agent_etcd_up") == Some(1.0) && health == 200 && grpc == ServingStatus::Serving
    })
    .await;
    assert!(line.starts_with("ok: agent RUNNING, etcd "), "{line}");
    assert_eq!(health, 200);
    assert_eq!(
        value(&before, "steward_agent_state{state=\"RUNNING\"}"),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        value(&before, "steward_agent_state{state=\"FAILED\"}"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(value(&before, "steward_agent_member_serving"), Some(1.0));
    assert_eq!(value(&before, "steward_agent_etcd_restarts"), Some(0.0));
    assert_eq!(value(&before, "steward_agent_etcd_exits_total"), Some(0.0));
    assert_eq!(value(&before, "steward_agent_etcd_crash_loop"), Some(0.0));
    let version = newest(3, 5).version.to_string();
    assert_eq!(
        value(
            &before,
            &format!("steward_agent_etcd_version_info{{role=\"active\",version=\"{version}\"}}")
        ),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        value(
            &before,
            &format!("steward_agent_etcd_staged_version_info{{version=\"{version}\"}}")
        ),
        Some(1.0),
        "{before}"
    );
    assert!(before.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");

    // etcd killed: down, NOT_SERVING on both health checks, then restarted
    // by the agent and counted.
    let pid = cluster.status(0).await.process.unwrap_or_default().pid;
    kill(Pid::from_raw(i32::try_from(pid).expect("pid fits")), Signal::SIGKILL).expect("kill etcd");
    let (down, health, line) = scrape_until(&cluster, "the member down", |text, health, grpc| {
        value(text, "steward_agent_etcd_up") == Some(0.0) && health == 503 && grpc == ServingStatus::NotServing
    })
    .await;
    assert_eq!(health, 503);
    assert!(
        line.contains("etcd is not running (last exit: killed by SIGKILL)"),
        "{line}"
    );
    assert_eq!(value(&down, "steward_agent_member_serving"), Some(0.0), "{down}");
    assert_eq!(value(&down, "steward_agent_etcd_exits_total"), Some(1.0), "{down}");

    let (after, _, _) = scrape_until(&cluster, "the member restarted", |text, health, grpc| {
        value(text, "steward_agent_etcd_up") == Some(1.0) && health == 200 && grpc == ServingStatus::Serving
    })
    .await;
    assert_eq!(value(&after, "steward_agent_etcd_restarts"), Some(1.0), "{after}");
    assert_eq!(
        value(&after, "steward_agent_state{state=\"RUNNING\"}"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(value(&after, "steward_agent_etcd_crash_loop"), Some(0.0), "{after}");

    // A snapshot, a call and a refused call are counted.
    cluster
        .snapshots(0)
        .await
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .expect("a snapshot");
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let stranger = cluster
        .channel_with(0, Some(ChannelIdentity::NoCertificate(pki.ca_cert())))
        .await
        .expect("a TLS channel without a client certificate");
    let refused = pb::agent_client::AgentClient::new(stranger)
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("no certificate, no status");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let (_, counted) = get(&plain_client(), &metrics_url(&cluster, 0, "http", "/metrics")).await;
    assert_eq!(
        value(&counted, "steward_agent_snapshot_attempts_total{result=\"ok\"}"),
        Some(1.0),
        "{counted}"
    );
    assert_eq!(
        value(&counted, "steward_agent_snapshot_last_attempt_success"),
        Some(1.0)
    );
    assert_eq!(value(&counted, "steward_agent_snapshots_stored"), Some(1.0));
    let newest_at = value(&counted, "steward_agent_snapshot_newest_timestamp_seconds").expect("the newest snapshot");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!((now - newest_at).abs() < 120.0, "taken just now: {newest_at} vs {now}");
    assert!(value(&counted, "steward_agent_snapshot_newest_size_bytes").unwrap_or(0.0) > 0.0);
    assert_eq!(
        value(&counted, "steward_agent_refused_calls_total{code=\"UNAUTHENTICATED\"}"),
        Some(1.0),
        "{counted}"
    );
    assert!(
        value(
            &counted,
            "steward_agent_rpc_calls_total{method=\"steward.agent.v1.Agent/GetStatus\",code=\"OK\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{counted}"
    );
    assert_eq!(
        value(
            &counted,
            "steward_agent_rpc_calls_total{method=\"steward.agent.v1.Agent/GetStatus\",code=\"UNAUTHENTICATED\"}"
        ),
        Some(1.0),
        "{counted}"
    );
    documented_and_alerted_on(&counted);
    cluster.cleanup();
}

/// The names of the metrics in `text` (`steward_agent_...`, as series are
/// written: counters with `_total`, histograms without their suffixes).
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("steward_agent_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every metric of a scrape is in docs/metrics.md, and every metric the
/// sample alerts use is in the scrape.
fn documented_and_alerted_on(scrape: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/steward-alerts.yml")).expect("the sample alerts");
    let samples: String = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let series: std::collections::BTreeSet<String> = names_in(&samples)
        .into_iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .map_or(n.clone(), str::to_owned)
        })
        .collect();
    let documented = names_in(&docs);
    let undocumented: Vec<_> = series.iter().filter(|n| !documented.contains(*n)).collect();
    assert!(undocumented.is_empty(), "not in docs/metrics.md: {undocumented:?}");
    let missing: Vec<_> = names_in(&alerts).into_iter().filter(|n| !series.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the sample alerts use metrics the agent does not have: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_https_carry_the_certificates_expiry() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).metrics(true).start().await;
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let ca = std::fs::read(pki.ca_cert()).expect("the CA");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
        .build()
        .expect("an HTTPS client");
    let (status, text) = get(&client, &metrics_url(&cluster, 0, "https", "/metrics")).await;
    assert_eq!(status, 200, "{text}");

    // The agent's certificate, as the file says.
    let cert_path = pki.dir.join("m0.crt");
    let pem = std::fs::read(&cert_path).expect("the agent certificate");
    let (_, der) = x509_parser::pem::parse_x509_pem(&pem).expect("a PEM certificate");
    let not_after = der
        .parse_x509()
        .expect("a certificate")
        .validity()
        .not_after
        .timestamp();
    #[allow(clippy::cast_precision_loss)]
    let expected = not_after as f64;
    let series = format!(
        "steward_agent_certificate_expiry_timestamp_seconds{{certificate=\"agent\",path=\"{}\"}}",
        cert_path.display()
    );
    assert_eq!(value(&text, &series), Some(expected), "{text}");

    let (health, line) = get(&client, &metrics_url(&cluster, 0, "https", "/healthz")).await;
    assert_eq!(health, 200, "{line}");

    // The TLS listener does not answer plain HTTP.
    let plain = plain_client()
        .get(metrics_url(&cluster, 0, "http", "/metrics"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
        "plain HTTP on the HTTPS listener must fail"
    );
    cluster.cleanup();
}
