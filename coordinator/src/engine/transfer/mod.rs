//! Files between steward and the agents: etcd releases up (staging), and
//! verified snapshots down.

pub mod copy_check;
pub mod download;
mod on_worker;
pub mod progress;
pub mod upload;
