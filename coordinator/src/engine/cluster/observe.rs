//! Observing a cluster: every agent's GetStatus, etcd's member list, each
//! member's Status, health and `/version`, alarms, auth and leases, joined
//! into one [`Observed`]. Every command starts here, and every step of a
//! rolling change observes again instead of trusting what it remembers.

use futures::future::join_all;
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use crate::engine::cluster::file::ClusterTarget;
use crate::engine::cluster::observed::{Observed, ObservedMember, ServedCertificate};
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress, AnswerError};
use crate::engine::connect::etcd::{self, EtcdError};

/// Why a cluster could not be observed at all.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Neither an agent nor a client URL gave an endpoint to ask etcd.
    #[error("no etcd endpoint to ask: no agent answered ({agents}) and no client URL was given")]
    NoEndpoints {
        /// The agents tried, with their errors.
        agents: String,
    },
    /// etcd did not answer the member list.
    #[error("cannot list the cluster's members")]
    MemberList(#[source] EtcdError),
}

/// One agent as observed.
#[derive(Clone, Debug)]
pub struct AgentView {
    /// Its address.
    pub address: AgentAddress,
    /// Its status, or why it did not answer.
    pub status: Result<pb::GetStatusResponse, String>,
}

/// The cluster and its agents at one moment.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The cluster model the rules and the planner read.
    pub observed: Observed,
    /// Every agent asked, answered or not.
    pub agents: Vec<AgentView>,
    /// Whether leases exist (for the 3.2 -> 3.3 auth rule).
    pub leases_in_use: bool,
}

/// How long one member, or one agent, may take to answer everything an
/// observation asks it. A frozen member accepts connections and answers
/// nothing: without a bound of its own, each of its questions would wait
/// out its own timeout, and every step would see the cluster seconds late.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

async fn agent_status(connector: &Connector, address: &AgentAddress) -> Result<pb::GetStatusResponse, AnswerError> {
    tokio::time::timeout(ANSWER_WITHIN, ask_agent(connector, address))
        .await
        .unwrap_or(Err(AnswerError::Timeout(ANSWER_WITHIN)))
}

/// GetStatus on the session's kept channel: observations poll every agent,
/// and a handshake per agent per poll would cost more than the question.
async fn ask_agent(connector: &Connector, address: &AgentAddress) -> Result<pb::GetStatusResponse, AnswerError> {
    agent::kept_call(connector, address, |mut clients| async move {
        clients
            .agent
            .get_status(pb::GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| AnswerError::refused("GetStatus", &s))
    })
    .await
}

/// Observes the cluster behind `agents`. `client_urls` are extra etcd
/// endpoints (from a cluster file) used when agents do not answer.
pub async fn observe(
    connector: &Connector,
    agents: &[AgentAddress],
    client_urls: &[String],
) -> Result<Observation, ObserveError> {
    observe_with(connector, agents, client_urls, &[]).await
}

/// Observes the cluster `target` names: its agents, the client URLs it
/// gives, and which agent serves which member (so an agent that does not
/// answer is named with its member).
///
/// # Errors
/// As [`observe`].
pub async fn observe_target(connector: &Connector, target: &ClusterTarget) -> Result<Observation, ObserveError> {
    let agents: Vec<AgentAddress> = target.members.iter().map(|m| m.agent.clone()).collect();
    let client_urls: Vec<String> = target.members.iter().filter_map(|m| m.client_url.clone()).collect();
    let known: Vec<(String, AgentAddress)> = target
        .members
        .iter()
        .filter_map(|m| Some((m.name.clone()?, m.agent.clone())))
        .collect();
    observe_with(connector, &agents, &client_urls, &known).await
}

/// [`observe`], knowing which agent serves which member (a cluster file's
/// names, or what an earlier observation saw), so that a member whose
/// agent does not answer is named with that agent and its error.
pub async fn observe_with(
    connector: &Connector,
    agents: &[AgentAddress],
    client_urls: &[String],
    known: &[(String, AgentAddress)],
) -> Result<Observation, ObserveError> {
    // Boxed once here: the observation's future is large, and every
    // command and every step of a roll awaits it.
    Box::pin(observe_now(connector, agents, client_urls, known)).await
}

async fn observe_now(
    connector: &Connector,
    agents: &[AgentAddress],
    client_urls: &[String],
    known: &[(String, AgentAddress)],
) -> Result<Observation, ObserveError> {
    let views: Vec<AgentView> = join_all(agents.iter().map(|address| async move {
        AgentView {
            address: address.clone(),
            status: agent_status(connector, address).await.map_err(|e| e.to_string()),
        }
    }))
    .await;

    let mut endpoints: Vec<String> = client_urls.to_vec();
    for view in &views {
        if let Ok(status) = &view.status
            && let Some(url) = status.agent.as_ref().and_then(|a| a.client_urls.first())
            && !endpoints.contains(url)
        {
            endpoints.push(url.clone());
        }
    }
    if endpoints.is_empty() {
        let agents = views
            .iter()
            .map(|v| {
                format!(
                    "{}: {}",
                    v.address,
                    v.status.as_ref().err().map_or("answered", String::as_str)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ObserveError::NoEndpoints { agents });
    }

    // One endpoint at a time: a client balanced over all of them may send
    // the question to the one member that is down.
    let mut answer = None;
    let mut last_error = None;
    for endpoint in &endpoints {
        let asked = tokio::time::timeout(ANSWER_WITHIN, async {
            let mut client = etcd::connect_member(connector, endpoint, "the member list").await?;
            match client.member_list().await {
                Ok(list) => Ok((client, list)),
                Err(e) => Err(EtcdError {
                    endpoints: endpoint.clone(),
                    what: "the member list",
                    reason: etcd::describe(&e),
                }),
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(EtcdError {
                endpoints: endpoint.clone(),
                what: "the member list",
                reason: format!("no answer within {ANSWER_WITHIN:?}"),
            })
        });
        match asked {
            Ok((client, list)) => {
                answer = Some((client, list, endpoint.clone()));
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let Some((mut cluster, list, answered)) = answer else {
        return Err(ObserveError::MemberList(last_error.unwrap_or(EtcdError {
            endpoints: endpoints.join(","),
            what: "the member list",
            reason: "no endpoint answered".into(),
        })));
    };
    let http = etcd::http_client(connector).ok();

    let members: Vec<ObservedMember> = join_all(list.members().iter().map(|member| {
        let http = http.clone();
        async move { Box::pin(observe_member(connector, member, http.as_ref())).await }
    }))
    .await;

    let mut observed = Observed {
        members,
        cluster_id: list.header().map_or(0, etcd_client::ResponseHeader::cluster_id),
        ..Observed::default()
    };
    attach_agents(&mut observed, &views);
    explain_missing_agents(&mut observed, &views, known);
    match etcd::alarms(&mut cluster).await {
        Ok(alarms) => observed.alarms = alarms,
        Err(error) => observed.alarms_error = Some(error.to_string()),
    }
    match etcd::auth_enabled(connector, &answered).await {
        Ok(enabled) => observed.auth_enabled = enabled,
        Err(error) => observed.auth_error = Some(error.to_string()),
    }
    observed.cluster_version = observed
        .leader()
        .and_then(|l| l.cluster_version.clone())
        .or_else(|| observed.members.iter().find_map(|m| m.cluster_version.clone()));
    let leases_in_use = etcd::leases_in_use(&mut cluster).await.unwrap_or(false);
    Ok(Observation {
        observed,
        agents: views,
        leases_in_use,
    })
}

async fn observe_member(
    connector: &Connector,
    member: &etcd_client::Member,
    http: Option<&reqwest::Client>,
) -> ObservedMember {
    let client_url = member.client_urls().first().cloned().unwrap_or_default();
    let mut observed = ObservedMember {
        name: member.name().to_owned(),
        id: member.id(),
        is_learner: member.is_learner(),
        client_url: client_url.clone(),
        ..ObservedMember::default()
    };
    if client_url.is_empty() {
        observed.health_error = "the member has not published a client URL (never started?)".into();
        return observed;
    }
    // Each question within its own bound: a frozen member is given up on
    // at its Status, and a member without quorum still reports its Status
    // (its revision tells a restore what is lost) when its quorum read
    // cannot be answered.
    let status = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut client = etcd::connect_member(connector, &client_url, "Status")
            .await
            .map_err(|e| e.reason)?;
        let status = client.status().await;
        Ok::<_, String>((client, status))
    })
    .await;
    let (mut client, status) = match status {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => {
            observed.health_error = reason;
            return observed;
        }
        Err(_) => {
            observed.health_error = format!("Status: no answer within {ANSWER_WITHIN:?}");
            return observed;
        }
    };
    match status {
        Ok(status) => {
            observed.version = status.version().parse::<EtcdVersion>().ok();
            observed.is_leader = status.leader() == member.id();
            observed.applied_index = status.raft_applied_index();
            observed.raft_term = status.raft_term();
            observed.raft_index = status.raft_index();
            observed.db_size = u64::try_from(status.db_size()).unwrap_or(0);
            observed.db_size_in_use = u64::try_from(status.raft_used_db_size()).unwrap_or(0);
            observed.errors = status.errors().to_vec();
            observed.revision = status.header().map_or(0, etcd_client::ResponseHeader::revision);
            observed.storage_version = status.storage_version().parse::<EtcdVersion>().ok();
            observed.downgrade_target = status
                .downgrade_info()
                .filter(|d| d.enabled())
                .and_then(|d| d.target_version().parse::<EtcdVersion>().ok());
            // etcd 3.3 has no applied index in Status; the raft index is the
            // closest it reports.
            if observed.applied_index == 0 {
                observed.applied_index = observed.raft_index;
            }
        }
        Err(error) => {
            observed.health_error = format!("Status failed: {}", etcd::describe(&error));
            return observed;
        }
    }
    match tokio::time::timeout(ANSWER_WITHIN, etcd::check_health(&mut client)).await {
        Ok(Ok(())) => observed.healthy = true,
        Ok(Err(error)) => observed.health_error = error.to_string(),
        Err(_) => observed.health_error = format!("quorum read: no answer within {ANSWER_WITHIN:?}"),
    }
    if let Some(http) = http {
        observed.cluster_version = tokio::time::timeout(ANSWER_WITHIN, etcd::cluster_version(http, &client_url))
            .await
            .ok()
            .flatten();
    }
    observed
}

/// Pairs members with the agents that serve them (by member id, else by
/// name) and records agents that serve no listed member.
fn attach_agents(observed: &mut Observed, views: &[AgentView]) {
    for view in views {
        let Ok(status) = &view.status else { continue };
        let agent_member = status.member.clone().unwrap_or_default();
        let name = status.agent.as_ref().map(|a| a.member_name.clone()).unwrap_or_default();
        let found = observed.members.iter_mut().find(|m| {
            (agent_member.member_id != 0 && m.id == agent_member.member_id) || (!name.is_empty() && m.name == name)
        });
        let Some(member) = found else {
            observed.stray_agents.push(format!("{} ({name})", view.address));
            continue;
        };
        member.agent = Some(view.address.to_string());
        let agent = status.agent.clone().unwrap_or_default();
        member.agent_state = agent
            .state()
            .as_str_name()
            .trim_start_matches("AGENT_STATE_")
            .to_lowercase();
        member.agent_state_reason = agent.state_reason;
        member.agent_version = agent.version;
        member.agent_certificate = agent.tls_certificate.map(|served| ServedCertificate {
            subject: served.subject,
            not_after_unix: served.not_after.map_or(0, |t| t.seconds),
            sans: served.sans,
        });
        let versions = status.versions.clone().unwrap_or_default();
        member.agent_active = versions.active.parse().ok();
        member.agent_previous = versions.previous.parse().ok();
        member.staged = versions.staged.iter().filter_map(|v| v.parse().ok()).collect();
        let data = status.data_dir.clone().unwrap_or_default();
        member.v3_db_present = data.v3_db_present;
        member.v2_snap_present = data.v2_snap_present;
        member.newest_v2_snap_bytes = data.newest_v2_snap_bytes;
        member.state_dir_free_bytes = status.disk.as_ref().map_or(0, |d| d.state_dir_free_bytes);
    }
}

/// Says, for every member no agent serves, why: the agent it is known to
/// have (or the only agent that did not answer, when one member lacks
/// one) and that agent's connection error; else every agent that did not
/// answer; else that no agent given serves it.
fn explain_missing_agents(observed: &mut Observed, views: &[AgentView], known: &[(String, AgentAddress)]) {
    let failed: Vec<(&AgentAddress, &str)> = views
        .iter()
        .filter_map(|v| v.status.as_ref().err().map(|e| (&v.address, e.as_str())))
        .collect();
    let lacking = observed.members.iter().filter(|m| m.agent.is_none()).count();
    for member in observed.members.iter_mut().filter(|m| m.agent.is_none()) {
        let own = known
            .iter()
            .find(|(name, _)| *name == member.name)
            .and_then(|(_, address)| failed.iter().find(|(a, _)| *a == address))
            .or_else(|| (lacking == 1 && failed.len() == 1).then(|| &failed[0]));
        member.agent_error = Some(match own {
            Some((address, error)) => {
                let error = error
                    .strip_prefix(&format!("cannot reach agent {address}: "))
                    .unwrap_or(error);
                format!("its agent {address} does not answer: {error}")
            }
            None if failed.is_empty() => "none of the agents given serves it".to_owned(),
            None => format!(
                "no agent answered for it; agents that did not answer: {}",
                failed
                    .iter()
                    .map(|(address, error)| format!("{address} ({error})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(address: &str, member_id: u64, name: &str) -> AgentView {
        AgentView {
            address: address.parse().unwrap(),
            status: Ok(pb::GetStatusResponse {
                agent: Some(pb::AgentInfo {
                    member_name: name.into(),
                    state: pb::AgentState::Running.into(),
                    ..pb::AgentInfo::default()
                }),
                member: Some(pb::MemberStatus {
                    member_id,
                    ..pb::MemberStatus::default()
                }),
                versions: Some(pb::Versions {
                    active: "3.4.23".into(),
                    staged: vec!["3.4.23".into(), "3.5.16".into()],
                    ..pb::Versions::default()
                }),
                ..pb::GetStatusResponse::default()
            }),
        }
    }

    #[test]
    fn agents_pair_with_members_by_id_or_name_and_strays_are_kept() {
        let mut observed = Observed {
            members: vec![
                ObservedMember {
                    name: "m0".into(),
                    id: 10,
                    ..ObservedMember::default()
                },
                ObservedMember {
                    name: "m1".into(),
                    id: 11,
                    ..ObservedMember::default()
                },
                ObservedMember {
                    name: "m2".into(),
                    id: 12,
                    ..ObservedMember::default()
                },
            ],
            ..Observed::default()
        };
        let views = [
            view("127.0.0.1:7400", 10, "m0"),
            // Its etcd is down (no member id), but the name matches.
            view("127.0.0.1:7401", 0, "m1"),
            view("127.0.0.1:7409", 99, "other"),
        ];
        attach_agents(&mut observed, &views);
        assert_eq!(observed.members[0].agent.as_deref(), Some("127.0.0.1:7400"));
        assert_eq!(observed.members[1].agent.as_deref(), Some("127.0.0.1:7401"));
        assert_eq!(observed.members[2].agent, None);
        assert_eq!(observed.members[0].agent_state, "running");
        assert_eq!(observed.members[0].staged.len(), 2);
        assert_eq!(observed.stray_agents, ["127.0.0.1:7409 (other)"]);
    }

    fn unanswered(address: &str) -> AgentView {
        AgentView {
            address: address.parse().unwrap(),
            status: Err("cannot reach agent: connection refused".into()),
        }
    }

    fn three_members() -> Observed {
        Observed {
            members: (0..3)
                .map(|i| ObservedMember {
                    name: format!("m{i}"),
                    id: 10 + i,
                    ..ObservedMember::default()
                })
                .collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn a_member_without_agent_is_named_with_its_agent_and_the_error() {
        // The only member without an agent and the only silent agent.
        let mut observed = three_members();
        let views = [
            view("127.0.0.1:7400", 10, "m0"),
            unanswered("127.0.0.1:9999"),
            view("127.0.0.1:7402", 12, "m2"),
        ];
        attach_agents(&mut observed, &views);
        explain_missing_agents(&mut observed, &views, &[]);
        assert_eq!(
            observed.members[1].why_no_agent(),
            "its agent 127.0.0.1:9999 does not answer: cannot reach agent: connection refused"
        );
        assert_eq!(observed.members[0].agent_error, None);

        // Two silent agents: the known pairing names the right one.
        let mut observed = three_members();
        let views = [
            view("127.0.0.1:7400", 10, "m0"),
            unanswered("127.0.0.1:7401"),
            unanswered("127.0.0.1:7402"),
        ];
        attach_agents(&mut observed, &views);
        let known = [("m2".to_owned(), "127.0.0.1:7402".parse().unwrap())];
        explain_missing_agents(&mut observed, &views, &known);
        assert!(
            observed.members[2]
                .why_no_agent()
                .starts_with("its agent 127.0.0.1:7402")
        );
        assert_eq!(
            observed.members[1].why_no_agent(),
            "no agent answered for it; agents that did not answer: \
             127.0.0.1:7401 (cannot reach agent: connection refused), \
             127.0.0.1:7402 (cannot reach agent: connection refused)"
        );

        // Every agent answered, none for this member.
        let mut observed = three_members();
        let views = [view("127.0.0.1:7400", 10, "m0"), view("127.0.0.1:7402", 12, "m2")];
        attach_agents(&mut observed, &views);
        explain_missing_agents(&mut observed, &views, &[]);
        assert_eq!(observed.members[1].why_no_agent(), "none of the agents given serves it");
    }
}
