//! The end-to-end scenarios, one module per subject, in one test binary so
//! the whole suite links once. Each runs real etcd release binaries under
//! real `steward-agent` processes (see the harness, `steward_tests`);
//! nextest runs them one at a time (`.config/nextest.toml`).

// Test code: a failed expectation is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod activate;
mod adoption;
mod agent_flood;
mod agent_status;
mod agent_tls;
mod backup;
mod backup_pins;
mod binary_refusals;
mod cancel;
mod certs_lifecycle;
mod chaos;
mod cli_habits;
mod cli_roll;
mod crash_restart;
mod engine_api;
mod etcd_auth;
mod etcd_tls;
mod exclusion;
mod faults_coordinator;
mod faults_frozen;
mod faults_matrix;
mod fencing;
mod flags;
mod fleet;
mod hosts_backup;
mod hosts_packages;
mod hosts_restore;
mod hosts_roll;
mod hosts_unit;
mod input_limits;
mod large_db;
mod lifecycle;
mod local_cluster;
mod messages;
mod metrics;
mod observe;
mod plan;
mod probe;
mod refusals;
mod restore;
mod restore_recovery;
mod restore_refusals;
mod retention;
mod roll_versions;
mod rollback;
mod snapshots;
mod take_down;
mod upgrade;
mod upgrade_paths;
mod upload_limits;
mod versions_3_6;
mod versions_3_6_undo;
mod versions_3_7;
