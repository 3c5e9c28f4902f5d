//! What an unidentified peer can cost an agent: calls without a client
//! certificate, and connections with a certificate of another CA, by the
//! thousand. The agent refuses them (UNAUTHENTICATED, or in the TLS
//! handshake), logs them in aggregate, writes no audit line for them, and
//! keeps answering an admin meanwhile. A flood of connections is capped:
//! the agent stays small and its admin's connection is served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use steward_proto::Role;
use steward_proto::v1 as pb;
use steward_tests::cluster::ChannelIdentity;
use steward_tests::tls_probe::{ANSWER_WITHIN, Probe, probe, tls_connector};
use steward_tests::{Cluster, ClusterBuilder, newest};

/// Calls of each kind.
const CALLS: usize = 5000;
/// Callers at once.
const PARALLEL: usize = 8;
/// The most the agent's own files may grow under the flood.
const GROWTH_LIMIT: u64 = 64 * 1024;
/// Bytes of every file of the agent's own: its log, the audit log, and
/// its logs dir (etcd's log there too, which the flood does not touch).
fn agent_bytes(cluster: &Cluster, i: usize) -> u64 {
    fn tree(path: &Path) -> u64 {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| tree(&e.path())).sum())
                .unwrap_or(0),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        }
    }
    let member = &cluster.members[i];
    let files: [PathBuf; 3] = [
        member.log_path.clone(),
        member.state_dir.join("audit.log"),
        member.state_dir.join("logs"),
    ];
    files.iter().map(|f| tree(f)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unidentified_callers_costs_the_agent_no_disk_and_no_service() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let foreign = pki.foreign(Role::Admin, "mallory");
    let before = agent_bytes(&cluster, 0);

    // An admin asks for the status throughout; every answer must come.
    let admin = cluster.agent(0).await;
    let watching = tokio::spawn(async move {
        let mut admin = admin;
        let mut slowest = Duration::ZERO;
        let mut answers = 0;
        let stop = Instant::now() + Duration::from_secs(600);
        while Instant::now() < stop {
            let asked = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(5), admin.get_status(pb::GetStatusRequest {})).await;
            match answer {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => return Err(format!("GetStatus failed: {status}")),
                Err(_) => return Err("GetStatus took more than 5 s".to_owned()),
            }
            slowest = slowest.max(asked.elapsed());
            answers += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if FLOOD_DONE.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
        Ok((answers, slowest))
    });

    // Without a certificate: one connection each, every call refused.
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let channel = cluster
            .channel_with(0, Some(ChannelIdentity::NoCertificate(pki.ca_cert())))
            .await
            .expect("a TLS channel without a client certificate");
        tasks.push(tokio::spawn(async move {
            let mut client = pb::agent_client::AgentClient::new(channel);
            for _ in 0..CALLS / PARALLEL {
                let refused = tokio::time::timeout(ANSWER_WITHIN, client.activate(pb::ActivateRequest::default()))
                    .await
                    .unwrap_or_else(|_| panic!("a call without a certificate had no answer within {ANSWER_WITHIN:?}"))
                    .expect_err("no certificate, no call");
                assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a caller without a certificate");
    }

    // With a certificate of another CA: refused in the handshake, each time
    // on a new connection.
    let address: SocketAddr = cluster.members[0].agent_addr.parse().expect("the agent's address");
    let foreign = tls_connector(&foreign);
    let own = tls_connector(&pki.client("admin"));
    assert_eq!(
        probe(address, &own).await,
        Probe::Served,
        "the probe tells a served connection from a refused one"
    );
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let foreign = foreign.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for _ in 0..CALLS / PARALLEL {
                match probe(address, &foreign).await {
                    Probe::Refused => refused += 1,
                    Probe::Served => panic!("a certificate of another CA was served"),
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.expect("a caller with a foreign certificate");
    }
    assert_eq!(refused, CALLS / PARALLEL * PARALLEL);
    FLOOD_DONE.store(true, std::sync::atomic::Ordering::Relaxed);

    let (answers, slowest) = watching
        .await
        .expect("the admin's task")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(answers > 0, "the admin was answered");
    let grown = agent_bytes(&cluster, 0).saturating_sub(before);
    eprintln!(
        "flood of {} refused calls and {} refused handshakes: the agent's files grew by {grown} bytes; the admin's \
         {answers} GetStatus calls took at most {slowest:?}",
        CALLS / PARALLEL * PARALLEL,
        refused
    );
    assert!(
        grown < GROWTH_LIMIT,
        "the agent's files grew by {grown} bytes under the flood"
    );
    let audit = std::fs::read_to_string(cluster.members[0].state_dir.join("audit.log")).unwrap_or_default();
    assert!(
        !audit.contains("mallory"),
        "no audit line for a caller nobody identified"
    );
    assert!(
        audit.lines().all(|line| !line.contains("no client certificate")),
        "no audit line for a caller without a certificate"
    );
    cluster.cleanup();
}

static FLOOD_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Resident memory of a process, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Connections the flood opens.
const CONNECTIONS: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_leaves_the_agent_small_and_serving() {
    // Room for the flood's descriptors here, and in the agent started next.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("getrlimit");
    let wanted = hard.min(65_536);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
    assert!(
        wanted >= 2 * CONNECTIONS as u64 / 2,
        "the flood needs {CONNECTIONS} descriptors, the limit is {wanted}"
    );
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let agent_pid = cluster.agent_pid(0).expect("the agent's pid");
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let mut admin = cluster.agent(0).await;
    admin
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("the admin before the flood");

    // TLS connections without a certificate (the handshake completes for
    // those), held open.
    let ca = std::fs::read(pki.ca_cert()).expect("the CA");
    let tls = tonic::transport::ClientTlsConfig::new()
        .domain_name("127.0.0.1")
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    let url = format!("https://{}", cluster.members[0].agent_addr);
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let (url, tls) = (url.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..CONNECTIONS / PARALLEL {
                let endpoint = tonic::transport::Channel::from_shared(url.clone())
                    .expect("a URL")
                    .tls_config(tls.clone())
                    .expect("TLS")
                    .connect_timeout(Duration::from_secs(5));
                match endpoint.connect().await {
                    Ok(channel) => held.push(channel),
                    Err(_) => refused += 1,
                }
            }
            (held, refused)
        }));
    }
    // While the flood goes on and after, the admin's connection answers
    // within a second, and the agent stays small.
    let mut slowest = Duration::ZERO;
    let mut peak = 0;
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        let asked = Instant::now();
        admin
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("the admin during the flood");
        slowest = slowest.max(asked.elapsed());
        peak = peak.max(resident(agent_pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut held = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (channels, closed) = task.await.expect("a flooding task");
        held.extend(channels);
        refused += closed;
    }
    let asked = Instant::now();
    admin
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("the admin with the flood's connections held");
    slowest = slowest.max(asked.elapsed());
    peak = peak.max(resident(agent_pid));
    eprintln!(
        "connection flood: {} held, {refused} closed by the agent; agent resident peak {} MiB; slowest admin call {slowest:?}",
        held.len(),
        peak / (1024 * 1024)
    );
    assert!(
        peak < 100 * 1024 * 1024,
        "the agent grew to {} MiB",
        peak / (1024 * 1024)
    );
    assert!(slowest < Duration::from_secs(1), "an admin call took {slowest:?}");
    drop(held);
    cluster.cleanup();
}
