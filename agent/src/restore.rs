//! Replacing the member's data dir with a snapshot, so that every step can
//! be repeated after a crash and no data dir is ever overwritten.
//!
//! The restore tool writes a fresh data dir next to the old one (the
//! staging dir); only once it is complete is the old data dir renamed
//! aside, and the staging dir renamed into its place. What is on disk then
//! says how far a crashed restore got:
//!
//! | aside dir | staging dir | data dir | meaning                         |
//! |-----------|-------------|----------|---------------------------------|
//! | no        | any         | old      | tool not done: (re)run it       |
//! | yes       | yes         | no       | old moved aside: move fresh in  |
//! | yes       | no          | fresh    | done                            |
//!
//! A staging dir is only ever this restore's own output (its name carries
//! the restore id), so removing a half-written one loses nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::AgentError;
use crate::fsutil::{self, io_err};
use crate::state::RestoreRecord;

/// The longest a restore tool may run; a database of many gigabytes takes
/// minutes, not hours.
const TOOL_TIMEOUT: Duration = Duration::from_secs(1800);
/// Lines of the tool's output an error carries.
const OUTPUT_LINES: usize = 12;

/// Where a restore writes, next to the data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePaths {
    /// The restore tool's output until it is complete.
    pub staging: PathBuf,
    /// Where the replaced data dir goes.
    pub aside: PathBuf,
}

/// The staging dir of `attempt` and the aside path of restore `id` for
/// `data_dir`.
#[must_use]
pub fn paths(data_dir: &Path, id: &str, attempt: u32) -> RestorePaths {
    let with = |suffix: &str| {
        let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        data_dir.with_file_name(name)
    };
    RestorePaths {
        staging: with(&format!(".restore-{id}.{attempt}.part")),
        aside: with(&format!(".before-restore-{id}")),
    }
}

/// True when `path` is a mount point: the old data dir is renamed next to
/// itself, which a mount point cannot be.
#[must_use]
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(parent)) = (std::fs::metadata(path), path.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != own.dev())
}

/// Brings the data dir of `record` to the restored state, from wherever a
/// previous attempt stopped. `write_fresh` runs the restore tool into the
/// path it is given (which does not exist).
pub async fn replace_data_dir<F, Fut>(record: &RestoreRecord, write_fresh: F) -> Result<(), AgentError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), AgentError>>,
{
    let data = &record.data_dir;
    let staging = &record.staging_dir;
    let aside = &record.moved_aside_to;
    if aside.exists() {
        // The old data dir was moved aside, which happens only once the
        // staging dir was complete.
        if staging.exists() {
            if data.exists() {
                return Err(conflict(
                    record,
                    "the data dir, the staging dir and the moved-aside dir all exist",
                ));
            }
            fsutil::rename_durable(staging, data)?;
        } else if !data.exists() {
            return Err(conflict(
                record,
                "the old data dir was moved aside but neither the restored data dir nor its staging dir exists",
            ));
        }
        return Ok(());
    }
    if !record.had_data_dir && data.exists() && !staging.exists() {
        // There was no data dir to move aside, and the fresh one is in place.
        return Ok(());
    }
    if staging.exists() {
        tracing::info!(path = %staging.display(), "removing the output of an interrupted restore tool");
        std::fs::remove_dir_all(staging).map_err(io_err("remove", staging))?;
    }
    write_fresh(staging.clone()).await?;
    if !staging.join("member").is_dir() {
        return Err(AgentError::Tool {
            tool: "snapshot restore".into(),
            reason: format!("{} holds no member dir after the restore", staging.display()),
        });
    }
    if data.exists() {
        fsutil::rename_durable(data, aside)?;
    }
    fsutil::rename_durable(staging, data)
}

fn conflict(record: &RestoreRecord, what: &str) -> AgentError {
    AgentError::Precondition {
        operation: crate::state::Operation::Restore,
        reason: format!(
            "{what} ({}, {}, {}); steward does not guess which one to keep: move the wrong one away and retry",
            record.data_dir.display(),
            record.staging_dir.display(),
            record.moved_aside_to.display()
        ),
    }
}

/// One run of `etcdutl snapshot restore` (3.5) or `etcdctl snapshot
/// restore` (before 3.5).
#[derive(Clone, Debug)]
pub struct RestoreTool {
    /// The program.
    pub program: PathBuf,
    /// "etcdutl" or "etcdctl".
    pub name: &'static str,
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// `--name`.
    pub member_name: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
}

impl RestoreTool {
    /// The arguments for writing into `data_dir`.
    #[must_use]
    pub fn args(&self, data_dir: &Path) -> Vec<String> {
        vec![
            "snapshot".into(),
            "restore".into(),
            self.snapshot.display().to_string(),
            format!("--name={}", self.member_name),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-token={}", self.initial_cluster_token),
            format!("--initial-advertise-peer-urls={}", self.peer_urls.join(",")),
            format!("--data-dir={}", data_dir.display()),
        ]
    }

    /// Runs the tool into `data_dir` (which must not exist) and makes the
    /// result private to etcd's user, as etcd makes its own data dir.
    pub async fn run(&self, data_dir: PathBuf) -> Result<(), AgentError> {
        let failed = |reason: String| AgentError::Tool {
            tool: format!("{} snapshot restore", self.name),
            reason,
        };
        let child = tokio::process::Command::new(&self.program)
            .args(self.args(&data_dir))
            .env("ETCDCTL_API", "3")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(TOOL_TIMEOUT, child)
            .await
            .map_err(|_| failed(format!("did not finish within {TOOL_TIMEOUT:?}")))?
            .map_err(|e| failed(format!("cannot run {}: {e}", self.program.display())))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n  ");
            return Err(failed(format!("{}:\n  {tail}", output.status)));
        }
        fsutil::ensure_dir(&data_dir, 0o700)?;
        fsutil::fsync_dir(data_dir.parent().unwrap_or(Path::new("/")))
    }
}

/// Parses `--initial-cluster` text into (name, peer URL) pairs, and checks
/// that it names `member` with exactly `peer_urls`.
pub fn check_initial_cluster(text: &str, member: &str, peer_urls: &[String]) -> Result<(), String> {
    let mut pairs = Vec::new();
    for entry in text.split(',') {
        let (name, url) = entry
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && !u.is_empty())
            .ok_or_else(|| format!("{entry:?} is not name=peer-url"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url:?} is not an http(s) peer URL"));
        }
        pairs.push((name, url));
    }
    let mut mine: Vec<&str> = pairs.iter().filter(|(n, _)| *n == member).map(|(_, u)| *u).collect();
    let mut wanted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    mine.sort_unstable();
    wanted.sort_unstable();
    if mine.is_empty() {
        return Err(format!("it does not name this member ({member})"));
    }
    if mine != wanted {
        return Err(format!(
            "it gives {member} the peer URLs {}, but the member advertises {}",
            mine.join(","),
            wanted.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RestorePhase;

    fn record(root: &Path, had_data_dir: bool) -> RestoreRecord {
        let data_dir = root.join("m0.etcd");
        let p = paths(&data_dir, "r1", 1);
        RestoreRecord {
            id: "r1".into(),
            phase: RestorePhase::Restoring,
            snapshot_id: "s".into(),
            snapshot_sha256: String::new(),
            snapshot_revision: 1,
            version: "3.5.30".into(),
            initial_cluster: String::new(),
            initial_cluster_token: String::new(),
            data_dir,
            had_data_dir,
            moved_aside_to: p.aside,
            staging_dir: p.staging,
            attempt: 1,
            started_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn old_data(record: &RestoreRecord) {
        std::fs::create_dir_all(record.data_dir.join("member/snap")).unwrap();
        std::fs::write(record.data_dir.join("member/snap/db"), b"old").unwrap();
    }

    async fn fresh(path: PathBuf) -> Result<(), AgentError> {
        std::fs::create_dir_all(path.join("member/snap")).unwrap();
        std::fs::write(path.join("member/snap/db"), b"fresh").unwrap();
        Ok(())
    }

    fn db(dir: &Path) -> String {
        String::from_utf8(std::fs::read(dir.join("member/snap/db")).unwrap()).unwrap()
    }

    #[test]
    fn paths_sit_next_to_the_data_dir() {
        let p = paths(Path::new("/var/lib/etcd"), "20261121T100000Z", 2);
        assert_eq!(p.staging, Path::new("/var/lib/etcd.restore-20261121T100000Z.2.part"));
        assert_eq!(p.aside, Path::new("/var/lib/etcd.before-restore-20261121T100000Z"));
    }

    #[tokio::test]
    async fn a_restore_keeps_the_old_data_dir_aside() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        replace_data_dir(&r, fresh).await.unwrap();
        assert_eq!(db(&r.data_dir), "fresh");
        assert_eq!(db(&r.moved_aside_to), "old");
        assert!(!r.staging_dir.exists());
        // Again: already done, nothing changes and the tool does not run.
        replace_data_dir(&r, |_| async { panic!("the tool ran again") })
            .await
            .unwrap();
        assert_eq!(db(&r.data_dir), "fresh");
        assert_eq!(db(&r.moved_aside_to), "old");
    }

    #[tokio::test]
    async fn a_half_written_staging_dir_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        std::fs::create_dir_all(r.staging_dir.join("member")).unwrap();
        std::fs::write(r.staging_dir.join("member/partial"), b"x").unwrap();
        replace_data_dir(&r, fresh).await.unwrap();
        assert_eq!(db(&r.data_dir), "fresh");
        assert!(!r.data_dir.join("member/partial").exists());
        assert_eq!(db(&r.moved_aside_to), "old");
    }

    #[tokio::test]
    async fn a_crash_after_moving_the_old_dir_aside_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        fresh(r.staging_dir.clone()).await.unwrap();
        std::fs::rename(&r.data_dir, &r.moved_aside_to).unwrap();
        replace_data_dir(&r, |_| async { panic!("the tool ran again") })
            .await
            .unwrap();
        assert_eq!(db(&r.data_dir), "fresh");
        assert_eq!(db(&r.moved_aside_to), "old");
    }

    #[tokio::test]
    async fn a_failing_tool_leaves_the_old_data_dir_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        let err = replace_data_dir(&r, |_| async {
            Err(AgentError::Tool {
                tool: "etcdutl".into(),
                reason: "disk full".into(),
            })
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("etcdutl"), "{err}");
        assert_eq!(db(&r.data_dir), "old");
        assert!(!r.moved_aside_to.exists());
    }

    #[tokio::test]
    async fn no_old_data_dir_means_nothing_to_move_aside() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), false);
        replace_data_dir(&r, fresh).await.unwrap();
        assert_eq!(db(&r.data_dir), "fresh");
        assert!(!r.moved_aside_to.exists());
        replace_data_dir(&r, |_| async { panic!("the tool ran again") })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn three_dirs_at_once_are_refused_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        fresh(r.staging_dir.clone()).await.unwrap();
        fresh(r.moved_aside_to.clone()).await.unwrap();
        let err = replace_data_dir(&r, fresh).await.unwrap_err();
        assert!(err.to_string().contains("all exist"), "{err}");
        assert_eq!(db(&r.data_dir), "old");
    }

    #[test]
    fn a_directory_on_its_parents_filesystem_is_no_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
        assert!(!is_mount_point(&dir.path().join("missing")));
        assert!(is_mount_point(Path::new("/proc")));
    }

    #[test]
    fn the_initial_cluster_must_name_this_member_with_its_peer_urls() {
        let urls = vec!["http://10.0.0.1:2380".to_owned()];
        let good = "m0=http://10.0.0.1:2380,m1=http://10.0.0.2:2380";
        assert!(check_initial_cluster(good, "m0", &urls).is_ok());
        let missing = check_initial_cluster("m1=http://10.0.0.2:2380", "m0", &urls).unwrap_err();
        assert!(missing.contains("does not name"), "{missing}");
        let other = check_initial_cluster("m0=http://10.0.0.9:2380", "m0", &urls).unwrap_err();
        assert!(other.contains("advertises"), "{other}");
        assert!(check_initial_cluster("m0", "m0", &urls).is_err());
        assert!(check_initial_cluster("m0=10.0.0.1:2380", "m0", &urls).is_err());
    }

    #[test]
    fn tool_arguments_name_everything_etcd_bootstraps_from() {
        let tool = RestoreTool {
            program: "/x/etcdutl".into(),
            name: "etcdutl",
            snapshot: "/s/a.db".into(),
            member_name: "m0".into(),
            initial_cluster: "m0=http://h:2380".into(),
            initial_cluster_token: "tok".into(),
            peer_urls: vec!["http://h:2380".into()],
        };
        assert_eq!(
            tool.args(Path::new("/d.part")),
            [
                "snapshot",
                "restore",
                "/s/a.db",
                "--name=m0",
                "--initial-cluster=m0=http://h:2380",
                "--initial-cluster-token=tok",
                "--initial-advertise-peer-urls=http://h:2380",
                "--data-dir=/d.part"
            ]
        );
    }
}
