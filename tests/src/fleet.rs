//! Fleets of test clusters: each cluster's description file and the
//! inventory that lists them, as an operator writes them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Cluster;

/// Writes `dir/<name>.toml` describing `cluster` under `name`, with its
/// own agent and etcd TLS: each test cluster has its own CAs.
///
/// # Panics
/// When the file cannot be written.
#[must_use]
pub fn write_cluster_file(dir: &Path, name: &str, cluster: &Cluster) -> PathBuf {
    let mut text = format!("name = \"{name}\"\n");
    if let Some(pki) = &cluster.etcd_pki {
        let files = pki.client();
        let path = |p: Option<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        let _ = write!(
            text,
            "\n[etcd]\ncacert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            path(files.cacert),
            path(files.cert),
            path(files.key)
        );
    }
    if let Some(pki) = &cluster.pki {
        let files = pki.client("admin");
        let _ = write!(
            text,
            "\n[agent_tls]\ncacert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            files.cacert.display(),
            files.cert.display(),
            files.key.display()
        );
    }
    for member in &cluster.members {
        let _ = write!(
            text,
            "\n[[members]]\nname = \"{}\"\nagent = \"{}\"\nclient_url = \"{}\"\n",
            member.name, member.agent_addr, member.client_url
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Writes `dir/inventory.toml` listing `(name, cluster file, labels)`.
///
/// # Panics
/// When the file cannot be written.
#[must_use]
pub fn write_inventory(dir: &Path, clusters: &[(&str, &Path, &[&str])]) -> PathBuf {
    let mut text = String::from("# steward fleet inventory\n");
    for (name, file, labels) in clusters {
        let labels: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
        let _ = write!(
            text,
            "\n[[clusters]]\nname = \"{name}\"\nfile = \"{}\"\nlabels = [{}]\n",
            file.display(),
            labels.join(", ")
        );
    }
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// `steward` without the harness's process-wide identity: every cluster is
/// reached with what its own cluster file says.
///
/// # Panics
/// When steward cannot be run.
#[must_use]
pub fn steward_by_cluster_files(args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::cluster::steward_binary())
        .args(args)
        .env_remove("STEWARD_AGENT_CACERT")
        .env_remove("STEWARD_AGENT_CERT")
        .env_remove("STEWARD_AGENT_KEY")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .output()
        .unwrap_or_else(|e| panic!("cannot run steward {args:?}: {e}"))
}
