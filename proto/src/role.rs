//! The roles a client certificate can carry, and what each may call. A
//! certificate carries its role as the organizational unit (OU) of its
//! subject, its identity as the common name (CN); `steward certs issue`
//! writes both, and the agent reads them on every call.

use std::fmt;
use std::str::FromStr;

/// A role, from the most to the least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything: version switches, lifecycle, binaries, snapshots.
    Admin,
    /// Status, plan-time queries (CheckFlags, CheckV2Store, binary lists),
    /// logs, snapshots.
    Operator,
    /// Status and listings.
    Reader,
    /// Snapshots only: take, list, download.
    Backup,
    /// An agent's own server certificate; it may call nothing.
    Agent,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Self; 5] = [Self::Admin, Self::Operator, Self::Reader, Self::Backup, Self::Agent];

    /// The name written into certificates.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Reader => "reader",
            Self::Backup => "backup",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role (admin, operator, reader, backup, agent)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// The organization every steward certificate names (O).
pub const ORGANIZATION: &str = "steward";

/// The roles allowed to call `path` ("/package.Service/Method"). Health
/// and reflection are open to every role; a path not listed is allowed to
/// nobody, so an RPC added without an entry here is refused, not open.
#[must_use]
pub fn allowed(path: &str) -> &'static [Role] {
    use Role::{Admin, Backup, Operator, Reader};
    const ALL_CALLERS: &[Role] = &[Admin, Operator, Reader, Backup];
    const STATUS: &[Role] = &[Admin, Operator, Reader];
    // `steward backup` finds the leader and each agent's member through
    // GetStatus: the backup role, which may read every key through a
    // snapshot, may read the agent's status too.
    const STATUS_AND_BACKUP: &[Role] = &[Admin, Operator, Reader, Backup];
    const PLANNING: &[Role] = &[Admin, Operator];
    const SNAPSHOT_DATA: &[Role] = &[Admin, Operator, Backup];
    const LISTING: &[Role] = &[Admin, Operator, Reader, Backup];
    const ADMIN: &[Role] = &[Admin];
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        return ALL_CALLERS;
    }
    match path.strip_prefix("/steward.agent.v1.") {
        Some("Agent/GetStatus") => STATUS_AND_BACKUP,
        Some("Binaries/ListBinaries") => STATUS,
        Some("Agent/CheckFlags" | "Agent/CheckV2Store" | "Agent/TailLogs") => PLANNING,
        Some("Snapshots/TakeSnapshot" | "Snapshots/TakeAndSendSnapshot" | "Snapshots/DownloadSnapshot") => {
            SNAPSHOT_DATA
        }
        Some("Snapshots/ListSnapshots") => LISTING,
        Some(
            "Agent/Activate"
            | "Agent/Rollback"
            | "Agent/Start"
            | "Agent/Stop"
            | "Agent/Restart"
            | "Agent/RestoreMember"
            | "Agent/FinishRestore"
            | "Snapshots/UploadSnapshot"
            | "Snapshots/ImportSnapshot"
            | "Snapshots/PinSnapshot"
            | "Binaries/ImportBinary"
            | "Binaries/UploadBinary",
        ) => ADMIN,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contract_has_its_roles() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let mut count = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(!allowed(&path).is_empty(), "{path} has no roles");
                    assert!(allowed(&path).contains(&Role::Admin), "{path}: admin may do everything");
                    count += 1;
                }
            }
        }
        assert_eq!(count, 21);
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn the_table_of_the_roles() {
        let may = |role: Role, path: &str| allowed(path).contains(&role);
        let agent = |m: &str| format!("/steward.agent.v1.Agent/{m}");
        let snapshots = |m: &str| format!("/steward.agent.v1.Snapshots/{m}");
        let binaries = |m: &str| format!("/steward.agent.v1.Binaries/{m}");
        for method in [
            "Activate",
            "Rollback",
            "Start",
            "Stop",
            "Restart",
            "RestoreMember",
            "FinishRestore",
        ] {
            assert!(may(Role::Admin, &agent(method)));
            for role in [Role::Operator, Role::Reader, Role::Backup, Role::Agent] {
                assert!(!may(role, &agent(method)), "{role} {method}");
            }
        }
        assert!(!may(Role::Operator, &binaries("UploadBinary")));
        assert!(!may(Role::Operator, &snapshots("UploadSnapshot")));
        assert!(!may(Role::Backup, &snapshots("UploadSnapshot")));
        assert!(!may(Role::Operator, &snapshots("ImportSnapshot")));
        assert!(may(Role::Admin, &snapshots("ImportSnapshot")));
        // A pin decides what retention keeps: an admin's call.
        assert!(may(Role::Admin, &snapshots("PinSnapshot")));
        assert!(!may(Role::Backup, &snapshots("PinSnapshot")));
        assert!(!may(Role::Operator, &snapshots("PinSnapshot")));
        assert!(may(Role::Reader, &agent("GetStatus")));
        assert!(may(Role::Backup, &agent("GetStatus")));
        assert!(!may(Role::Backup, &binaries("ListBinaries")));
        assert!(may(Role::Reader, &binaries("ListBinaries")));
        assert!(may(Role::Reader, &snapshots("ListSnapshots")));
        assert!(!may(Role::Reader, &snapshots("TakeSnapshot")));
        assert!(!may(Role::Reader, &snapshots("DownloadSnapshot")));
        assert!(!may(Role::Reader, &agent("CheckFlags")));
        assert!(may(Role::Backup, &snapshots("TakeSnapshot")));
        assert!(may(Role::Backup, &snapshots("TakeAndSendSnapshot")));
        assert!(!may(Role::Reader, &snapshots("TakeAndSendSnapshot")));
        assert!(may(Role::Backup, &snapshots("DownloadSnapshot")));
        assert!(may(Role::Operator, &agent("CheckFlags")));
        assert!(may(Role::Operator, &agent("CheckV2Store")));
        assert!(!may(Role::Reader, &agent("CheckV2Store")));
        assert!(may(Role::Operator, &snapshots("TakeSnapshot")));
        assert!(may(Role::Reader, "/grpc.health.v1.Health/Check"));
        assert!(!may(Role::Agent, "/grpc.health.v1.Health/Check"));
        assert!(allowed("/steward.agent.v1.Agent/SomethingNew").is_empty());
        assert!(allowed("/other.Service/Call").is_empty());
    }
}
