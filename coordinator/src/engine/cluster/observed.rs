//! What the coordinator observed about a cluster, as plain data.
//!
//! Observing (etcd's member list, each member's Status and `/version`,
//! alarms, auth, each agent's GetStatus) is I/O; deciding (the rules, the
//! plan) is pure. This module is the boundary: the observer fills these
//! types, the rules and the planner read them, and the unit tests build
//! them by hand.

use steward_proto::EtcdVersion;

/// The certificate an agent serves its API with, as it says in GetStatus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedCertificate {
    /// Its subject (`CN=m0, O=steward, OU=agent`).
    pub subject: String,
    /// The end of its validity, seconds since the epoch.
    pub not_after_unix: i64,
    /// The names it is valid for.
    pub sans: Vec<String>,
}

/// One etcd member as the coordinator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedMember {
    /// etcd's member name.
    pub name: String,
    /// etcd's member id.
    pub id: u64,
    /// The agent serving this member, if one was found.
    pub agent: Option<String>,
    /// Why no agent serves it, when none does: the address of its agent
    /// and the connection error, as far as they are known.
    pub agent_error: Option<String>,
    /// The member's binary version (Status), if it answered.
    pub version: Option<EtcdVersion>,
    /// Whether the member answered a quorum read.
    pub healthy: bool,
    /// Why it is not healthy.
    pub health_error: String,
    /// A learner (non-voting) member.
    pub is_learner: bool,
    /// The member is the leader.
    pub is_leader: bool,
    /// The member's applied raft index.
    pub applied_index: u64,
    /// Size of the member's database in bytes.
    pub db_size: u64,
    /// v3 data present (`member/snap/db`).
    pub v3_db_present: bool,
    /// v2 store snapshots present (`member/snap/*.snap`).
    pub v2_snap_present: bool,
    /// Size of the newest v2 snapshot, the guides' estimate of v2 data size.
    pub newest_v2_snap_bytes: u64,
    /// Versions staged on the member's agent.
    pub staged: Vec<EtcdVersion>,
    /// The agent's lifecycle state ("running", "failed", ...).
    pub agent_state: String,
    /// Free bytes in the agent's state dir (where snapshots go).
    pub state_dir_free_bytes: u64,
    /// The client URL the coordinator reaches the member through.
    pub client_url: String,
    /// The cluster version this member reports (`/version`).
    pub cluster_version: Option<EtcdVersion>,
    /// Raft term.
    pub raft_term: u64,
    /// Raft index.
    pub raft_index: u64,
    /// Bytes of the database in use (3.4+).
    pub db_size_in_use: u64,
    /// Errors the member reports (3.4+).
    pub errors: Vec<String>,
    /// The version the agent has active.
    pub agent_active: Option<EtcdVersion>,
    /// The version the agent ran before its last switch (Rollback's target).
    pub agent_previous: Option<EtcdVersion>,
    /// Why the agent is in its state (for FAILED).
    pub agent_state_reason: String,
    /// The agent's own steward version (empty when no agent answered).
    pub agent_version: String,
    /// The certificate the agent serves its API with (none in plaintext,
    /// or from an agent that does not say).
    pub agent_certificate: Option<ServedCertificate>,
    /// The member's store revision (Status header).
    pub revision: i64,
    /// The storage (schema) version the member reports (etcd 3.6+; empty
    /// before).
    pub storage_version: Option<EtcdVersion>,
    /// The downgrade target, when the member reports a downgrade enabled
    /// through etcd's Downgrade API (etcd 3.6+).
    pub downgrade_target: Option<EtcdVersion>,
}

/// The whole cluster as observed at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// etcd's cluster id (0 when unknown).
    pub cluster_id: u64,
    /// Every member of etcd's member list.
    pub members: Vec<ObservedMember>,
    /// The cluster version (`/version` etcdcluster), when decided.
    pub cluster_version: Option<EtcdVersion>,
    /// Whether etcd's authentication is enabled.
    pub auth_enabled: bool,
    /// Active alarms: (member id, alarm name).
    pub alarms: Vec<(u64, String)>,
    /// Agents that answered but serve no member of the member list.
    pub stray_agents: Vec<String>,
    /// Why the alarms could not be read (then they are unknown, not none).
    pub alarms_error: Option<String>,
    /// Why auth could not be detected (then it is unknown, not off).
    pub auth_error: Option<String>,
}

impl ObservedMember {
    /// Why the member has no agent, for messages ("no agent answered").
    #[must_use]
    pub fn why_no_agent(&self) -> &str {
        self.agent_error.as_deref().unwrap_or("no agent answered for it")
    }
}

impl Observed {
    /// The current leader, if exactly one member says it leads.
    #[must_use]
    pub fn leader(&self) -> Option<&ObservedMember> {
        let mut leaders = self.members.iter().filter(|m| m.is_leader);
        let leader = leaders.next()?;
        leaders.next().is_none().then_some(leader)
    }

    /// The lowest member binary version: what the cluster runs at.
    #[must_use]
    pub fn lowest_version(&self) -> Option<&EtcdVersion> {
        self.members.iter().filter_map(|m| m.version.as_ref()).min()
    }

    /// The downgrade target any member reports enabled (etcd 3.6+).
    #[must_use]
    pub fn downgrade_target(&self) -> Option<&EtcdVersion> {
        self.members.iter().find_map(|m| m.downgrade_target.as_ref())
    }

    /// The highest member binary version.
    #[must_use]
    pub fn highest_version(&self) -> Option<&EtcdVersion> {
        self.members.iter().filter_map(|m| m.version.as_ref()).max()
    }
}
