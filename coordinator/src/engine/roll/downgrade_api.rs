//! etcd's Downgrade API (etcd 3.6 and later), as the 3.6 -> 3.5 downgrade
//! guide drives it: validate the target, enable the downgrade (the cluster
//! version drops to the target at once and every member migrates its
//! storage version), wait until every member still on the newer binary
//! reports the target's storage version, then swap binaries one member at
//! a time, leader last. Cancelling is possible while a member still runs
//! the newer binary.
//!
//! [`phase`] decides where a pass stands from an observation (pure, unit
//! tested); the calls below are the only I/O.

use steward_proto::EtcdVersion;

use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::connect::etcd::{self, EtcdError};

/// Where a pass through the Downgrade API stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No downgrade enabled yet: validate, then enable.
    Enable,
    /// Enabled; these members (on the newer binary) have not yet migrated
    /// their storage version to the target's.
    MigratingStorage {
        /// Names of the members still reporting a newer storage version.
        members: Vec<String>,
    },
    /// Enabled and migrated: the binaries can be swapped.
    Swap,
    /// A downgrade to another version is enabled: someone else started
    /// it; steward does not override it.
    OtherTarget(EtcdVersion),
}

/// The target minor as the API takes it ("3.5").
#[must_use]
pub fn api_version(target: &EtcdVersion) -> String {
    format!("{}.{}", target.major(), target.minor())
}

/// Where a Downgrade-API pass to `target` stands in `observed`. Members
/// already on the target's minor are not asked: 3.5 reports neither a
/// storage version nor downgrade info.
#[must_use]
pub fn phase(observed: &Observed, target: &EtcdVersion) -> Phase {
    let newer: Vec<_> = observed
        .members
        .iter()
        .filter(|m| m.version.as_ref().is_some_and(|v| !v.same_minor(target)))
        .collect();
    match observed.downgrade_target() {
        None => Phase::Enable,
        Some(enabled) if !enabled.same_minor(target) => Phase::OtherTarget(enabled.clone()),
        Some(_) => {
            let members: Vec<String> = newer
                .iter()
                .filter(|m| !m.storage_version.as_ref().is_some_and(|s| s.same_minor(target)))
                .map(|m| m.name.clone())
                .collect();
            if members.is_empty() {
                Phase::Swap
            } else {
                Phase::MigratingStorage { members }
            }
        }
    }
}

/// The members to send Downgrade requests through, in order: the healthy
/// members on the newest minor, the leader first. A member already on the
/// older binary proposes the request itself and, freshly restarted, can
/// sit on it past any timeout (a 3.5 member of a cluster downgrading from
/// 3.6 does); the leader on the newer binary answers at once.
#[must_use]
pub fn endpoints(observed: &Observed) -> Vec<String> {
    let newest = observed
        .members
        .iter()
        .filter_map(|m| m.version.as_ref())
        .map(EtcdVersion::minor_version)
        .max();
    let mut members: Vec<_> = observed
        .members
        .iter()
        .filter(|m| m.healthy && m.version.as_ref().map(EtcdVersion::minor_version) == newest)
        .collect();
    members.sort_by_key(|m| !m.is_leader);
    members.into_iter().map(|m| m.client_url.clone()).collect()
}

/// Sends one Downgrade request through `endpoints`, one member at a time
/// until one answers (see [`endpoints`]).
///
/// # Errors
/// etcd's refusal, described.
async fn call(
    connector: &Connector,
    endpoints: &[String],
    options: etcd_client::DowngradeOptions,
    what: &'static str,
) -> Result<(), EtcdError> {
    etcd::through_any(connector, endpoints, what, |client| {
        let options = options.clone();
        async move { client.maintenance_client().downgrade(options).await.map(drop) }
    })
    .await
}

/// `etcdctl downgrade validate <minor>`.
///
/// # Errors
/// etcd's reason the downgrade is not possible.
pub async fn validate(connector: &Connector, endpoints: &[String], target: &EtcdVersion) -> Result<(), EtcdError> {
    call(
        connector,
        endpoints,
        etcd_client::DowngradeOptions::Validate(api_version(target)),
        "Downgrade validate",
    )
    .await
}

/// `etcdctl downgrade enable <minor>`.
///
/// # Errors
/// etcd's refusal.
pub async fn enable(connector: &Connector, endpoints: &[String], target: &EtcdVersion) -> Result<(), EtcdError> {
    call(
        connector,
        endpoints,
        etcd_client::DowngradeOptions::Enable(api_version(target)),
        "Downgrade enable",
    )
    .await
}

/// `etcdctl downgrade cancel`.
///
/// # Errors
/// etcd's refusal (for example, no downgrade in progress).
pub async fn cancel(connector: &Connector, endpoints: &[String]) -> Result<(), EtcdError> {
    call(
        connector,
        endpoints,
        etcd_client::DowngradeOptions::Cancel,
        "Downgrade cancel",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::{cluster, v};

    fn enabled(versions: &[&str], target: &str, storage: &[Option<&str>]) -> Observed {
        let mut observed = cluster(versions, 0);
        for (member, storage) in observed.members.iter_mut().zip(storage) {
            if member.version.as_ref().is_some_and(|v| v.at_least_minor(3, 6)) {
                member.downgrade_target = Some(v(target));
            }
            member.storage_version = storage.map(v);
        }
        observed
    }

    #[test]
    fn requests_go_to_the_newer_members_leader_first() {
        let mut observed = cluster(&["3.5.36", "3.6.17", "3.6.17", "3.6.17"], 3);
        for (i, member) in observed.members.iter_mut().enumerate() {
            member.client_url = format!("http://m{i}");
        }
        observed.members[1].healthy = false;
        assert_eq!(endpoints(&observed), ["http://m3", "http://m2"]);
    }

    #[test]
    fn the_api_takes_the_minor() {
        assert_eq!(api_version(&v("3.5.26")), "3.5");
    }

    #[test]
    fn nothing_enabled_means_validate_then_enable() {
        let mut observed = cluster(&["3.6.0"; 3], 0);
        for m in &mut observed.members {
            m.storage_version = Some(v("3.6.0"));
        }
        assert_eq!(phase(&observed, &v("3.5.26")), Phase::Enable);
    }

    #[test]
    fn enabled_waits_for_every_newer_member_to_migrate_its_storage() {
        let observed = enabled(&["3.6.0"; 3], "3.5.0", &[Some("3.5.0"), Some("3.6.0"), Some("3.6.0")]);
        assert_eq!(
            phase(&observed, &v("3.5.26")),
            Phase::MigratingStorage {
                members: vec!["m1".into(), "m2".into()]
            }
        );
    }

    #[test]
    fn a_member_reporting_no_storage_version_is_not_migrated() {
        let observed = enabled(&["3.6.0"; 3], "3.5.0", &[Some("3.5.0"), None, Some("3.5.0")]);
        assert_eq!(
            phase(&observed, &v("3.5.26")),
            Phase::MigratingStorage {
                members: vec!["m1".into()]
            }
        );
    }

    #[test]
    fn migrated_storage_means_swap() {
        let observed = enabled(&["3.6.0"; 3], "3.5.0", &[Some("3.5.0"); 3]);
        assert_eq!(phase(&observed, &v("3.5.26")), Phase::Swap);
    }

    #[test]
    fn members_already_swapped_are_not_asked() {
        // A resumed pass: m0 runs 3.5 and reports neither storage version
        // nor downgrade info; the others still report the enabled downgrade.
        let observed = enabled(
            &["3.5.26", "3.6.0", "3.6.0"],
            "3.5.0",
            &[None, Some("3.5.0"), Some("3.5.0")],
        );
        assert_eq!(phase(&observed, &v("3.5.26")), Phase::Swap);
    }

    #[test]
    fn a_downgrade_to_another_version_is_not_overridden() {
        let observed = enabled(&["3.7.0"; 3], "3.6.0", &[Some("3.6.0"); 3]);
        assert_eq!(phase(&observed, &v("3.5.26")), Phase::OtherTarget(v("3.6.0")));
    }
}
