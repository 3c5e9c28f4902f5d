//! Files between steward and the agents: etcd releases up (staging), and
//! verified snapshots down.

pub mod copy_check;
pub mod download;
pub mod progress;
pub mod upload;
