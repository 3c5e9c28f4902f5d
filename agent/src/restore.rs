//! Replacing the member's data with a snapshot, so that every step can
//! be repeated after a crash and no member data is ever overwritten.
//!
//! The restore tool writes fresh member data into a staging dir inside the
//! data dir (`<data dir>/.restore-<id>.<attempt>.part/member`); only once it
//! is complete is the old `member` dir renamed aside
//! (`<data dir>/.before-restore-<id>`), and the fresh one renamed into its
//! place. Everything stays inside the data dir, which etcd must be able to
//! write anyway: a data dir that is a mount point, or the only writable
//! path of a sandboxed unit (`ReadWritePaths=/var/lib/etcd`), works. What is
//! on disk says how far a crashed restore got:
//!
//! | aside | fresh member | member | meaning                         |
//! |-------|--------------|--------|---------------------------------|
//! | no    | any          | old    | tool not done: (re)run it       |
//! | yes   | yes          | no     | old moved aside: move fresh in  |
//! | yes   | no           | fresh  | done                            |
//!
//! A staging dir is only ever this restore's own output (its name carries
//! the restore id), so removing a half-written one loses nothing. etcd
//! logs a warning about the dot-dirs it finds in its data dir and ignores
//! them.
//!
//! Records of earlier agents ([`RestoreLayout::BesideDataDir`]) staged next
//! to the data dir and swap the data dir itself; the same table holds with
//! the data dir in place of its `member` dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::AgentError;
use crate::fsutil::{self, io_err};
use crate::state::{RestoreLayout, RestoreRecord};

/// The longest a restore tool may run; a database of many gigabytes takes
/// minutes, not hours.
const TOOL_TIMEOUT: Duration = Duration::from_secs(1800);
/// Lines of the tool's output an error carries.
const OUTPUT_LINES: usize = 12;
/// The dir etcd keeps a member's data in, inside its data dir.
const MEMBER_DIR: &str = "member";

/// Where a restore writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePaths {
    /// The restore tool's output until it is complete.
    pub staging: PathBuf,
    /// Where the replaced member data goes.
    pub aside: PathBuf,
}

/// The staging dir of `attempt` and the aside path of restore `id` for
/// `data_dir`, in `layout`.
#[must_use]
pub fn paths(layout: RestoreLayout, data_dir: &Path, id: &str, attempt: u32) -> RestorePaths {
    match layout {
        RestoreLayout::InsideDataDir => RestorePaths {
            staging: data_dir.join(format!(".restore-{id}.{attempt}.part")),
            aside: data_dir.join(format!(".before-restore-{id}")),
        },
        RestoreLayout::BesideDataDir => {
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
    }
}

/// What a restore swaps: the member data in place, the fresh one the tool
/// wrote, and where the replaced one goes.
struct Swap<'a> {
    current: PathBuf,
    fresh: PathBuf,
    aside: &'a Path,
}

fn swap_of(record: &RestoreRecord) -> Swap<'_> {
    match record.layout {
        RestoreLayout::InsideDataDir => Swap {
            current: record.data_dir.join(MEMBER_DIR),
            fresh: record.staging_dir.join(MEMBER_DIR),
            aside: &record.moved_aside_to,
        },
        RestoreLayout::BesideDataDir => Swap {
            current: record.data_dir.clone(),
            fresh: record.staging_dir.clone(),
            aside: &record.moved_aside_to,
        },
    }
}

/// The member data a restore with `layout` would replace in `data_dir`.
#[must_use]
pub fn current_member_data(layout: RestoreLayout, data_dir: &Path) -> PathBuf {
    match layout {
        RestoreLayout::InsideDataDir => data_dir.join(MEMBER_DIR),
        RestoreLayout::BesideDataDir => data_dir.to_owned(),
    }
}

/// True when `path` is a mount point, bind mounts included (which share
/// their parent's device number): from the kernel's list of this process's
/// mounts, with the device comparison as a fallback where that list cannot
/// be read.
#[must_use]
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = path.canonicalize() else {
        return false;
    };
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(mounts) => mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .any(|point| unescape_mount_path(point) == canonical.as_os_str().to_string_lossy()),
        Err(_) => {
            use std::os::unix::fs::MetadataExt;
            let (Ok(own), Some(parent)) = (std::fs::metadata(&canonical), canonical.parent()) else {
                return false;
            };
            std::fs::metadata(parent).is_ok_and(|p| p.dev() != own.dev())
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3
                && let Ok(code) = u8::from_str_radix(&digits, 8)
            {
                out.push(char::from(code));
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Checks that this process can create and remove a directory in `dir`,
/// the way the restore tool and the swap will: with the agent's user, in
/// its mount namespace (a sandboxed unit's read-only paths included).
pub fn probe_writable(dir: &Path) -> Result<(), std::io::Error> {
    let probe = dir.join(format!(".steward-write-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)?;
    std::fs::remove_dir(&probe)
}

/// Brings the member data of `record` to the restored state, from wherever
/// a previous attempt stopped. `write_fresh` runs the restore tool into the
/// path it is given (which does not exist).
pub async fn replace_data_dir<F, Fut>(record: &RestoreRecord, write_fresh: F) -> Result<(), AgentError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), AgentError>>,
{
    let Swap { current, fresh, aside } = swap_of(record);
    let staging = &record.staging_dir;
    if aside.exists() {
        // The old member data was moved aside, which happens only once the
        // fresh data was complete.
        if fresh.exists() {
            if current.exists() {
                return Err(conflict(
                    record,
                    "the member data, the restored member data and the moved-aside data all exist",
                ));
            }
            fsutil::rename_durable(&fresh, &current)?;
        } else if !current.exists() {
            return Err(conflict(
                record,
                "the old member data was moved aside but neither the restored member data nor its staging dir exists",
            ));
        }
        return remove_emptied_staging(record);
    }
    if !record.had_data_dir && current.exists() && !fresh.exists() {
        // There was no member data to move aside, and the fresh one is in
        // place.
        return remove_emptied_staging(record);
    }
    if staging.exists() {
        tracing::info!(path = %staging.display(), "removing the output of an interrupted restore tool");
        std::fs::remove_dir_all(staging).map_err(io_err("remove", staging))?;
    }
    if record.layout == RestoreLayout::InsideDataDir && !record.data_dir.exists() {
        fsutil::ensure_dir(&record.data_dir, 0o700)?;
    }
    write_fresh(staging.clone()).await?;
    if !staging.join(MEMBER_DIR).is_dir() {
        return Err(AgentError::Tool {
            tool: "snapshot restore".into(),
            reason: format!("{} holds no member dir after the restore", staging.display()),
        });
    }
    if current.exists() {
        fsutil::rename_durable(&current, aside)?;
    }
    fsutil::rename_durable(&fresh, &current)?;
    remove_emptied_staging(record)
}

/// With the fresh member dir moved out, the staging dir is an empty shell.
fn remove_emptied_staging(record: &RestoreRecord) -> Result<(), AgentError> {
    if record.layout == RestoreLayout::InsideDataDir && record.staging_dir.exists() {
        std::fs::remove_dir_all(&record.staging_dir).map_err(io_err("remove", &record.staging_dir))?;
    }
    Ok(())
}

fn conflict(record: &RestoreRecord, what: &str) -> AgentError {
    let Swap { current, fresh, aside } = swap_of(record);
    AgentError::Precondition {
        operation: crate::state::Operation::Restore,
        reason: format!(
            "{what} ({}, {}, {}); steward does not guess which one to keep: move the wrong one away and retry",
            current.display(),
            fresh.display(),
            aside.display()
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

    fn record_in(layout: RestoreLayout, root: &Path, had_data_dir: bool) -> RestoreRecord {
        let data_dir = root.join("m0.etcd");
        let p = paths(layout, &data_dir, "r1", 1);
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
            layout,
            had_data_dir,
            moved_aside_to: p.aside,
            staging_dir: p.staging,
            attempt: 1,
            started_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn record(root: &Path, had_data_dir: bool) -> RestoreRecord {
        record_in(RestoreLayout::InsideDataDir, root, had_data_dir)
    }

    const LAYOUTS: [RestoreLayout; 2] = [RestoreLayout::InsideDataDir, RestoreLayout::BesideDataDir];

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

    /// The database of the member data moved aside.
    fn aside_db(record: &RestoreRecord) -> String {
        let member = match record.layout {
            RestoreLayout::InsideDataDir => record.moved_aside_to.clone(),
            RestoreLayout::BesideDataDir => record.moved_aside_to.join("member"),
        };
        String::from_utf8(std::fs::read(member.join("snap/db")).unwrap()).unwrap()
    }

    /// The crash state after the old member data moved aside and before
    /// the fresh one moved in.
    fn move_aside(record: &RestoreRecord) {
        let current = current_member_data(record.layout, &record.data_dir);
        std::fs::rename(&current, &record.moved_aside_to).unwrap();
    }

    #[test]
    fn paths_sit_inside_the_data_dir_or_beside_it_for_old_records() {
        let p = paths(
            RestoreLayout::InsideDataDir,
            Path::new("/var/lib/etcd"),
            "20261121T100000Z",
            2,
        );
        assert_eq!(p.staging, Path::new("/var/lib/etcd/.restore-20261121T100000Z.2.part"));
        assert_eq!(p.aside, Path::new("/var/lib/etcd/.before-restore-20261121T100000Z"));
        let p = paths(
            RestoreLayout::BesideDataDir,
            Path::new("/var/lib/etcd"),
            "20261121T100000Z",
            2,
        );
        assert_eq!(p.staging, Path::new("/var/lib/etcd.restore-20261121T100000Z.2.part"));
        assert_eq!(p.aside, Path::new("/var/lib/etcd.before-restore-20261121T100000Z"));
    }

    #[test]
    fn a_record_of_an_earlier_agent_keeps_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut value = serde_json::to_value(record(dir.path(), true)).unwrap();
        value.as_object_mut().unwrap().remove("layout");
        let old: RestoreRecord = serde_json::from_value(value).unwrap();
        assert_eq!(old.layout, RestoreLayout::BesideDataDir);
    }

    #[tokio::test]
    async fn a_restore_keeps_the_old_member_data_aside() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), true);
            old_data(&r);
            replace_data_dir(&r, fresh).await.unwrap();
            assert_eq!(db(&r.data_dir), "fresh", "{layout:?}");
            assert_eq!(aside_db(&r), "old", "{layout:?}");
            assert!(!r.staging_dir.exists(), "{layout:?}");
            // Again: already done, nothing changes and the tool does not run.
            replace_data_dir(&r, |_| async { panic!("the tool ran again") })
                .await
                .unwrap();
            assert_eq!(db(&r.data_dir), "fresh");
            assert_eq!(aside_db(&r), "old");
        }
    }

    #[tokio::test]
    async fn inside_the_data_dir_only_the_data_dir_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(dir.path(), true);
        old_data(&r);
        replace_data_dir(&r, fresh).await.unwrap();
        let beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(beside, ["m0.etcd"], "nothing next to the data dir");
        let mut inside: Vec<String> = std::fs::read_dir(&r.data_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        assert_eq!(inside, [".before-restore-r1", "member"]);
    }

    #[tokio::test]
    async fn a_half_written_staging_dir_is_written_again() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), true);
            old_data(&r);
            std::fs::create_dir_all(r.staging_dir.join("member")).unwrap();
            std::fs::write(r.staging_dir.join("member/partial"), b"x").unwrap();
            replace_data_dir(&r, fresh).await.unwrap();
            assert_eq!(db(&r.data_dir), "fresh");
            assert!(!r.data_dir.join("member/partial").exists(), "{layout:?}");
            assert_eq!(aside_db(&r), "old");
        }
    }

    #[tokio::test]
    async fn a_crash_after_moving_the_old_data_aside_is_finished() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), true);
            old_data(&r);
            fresh(r.staging_dir.clone()).await.unwrap();
            move_aside(&r);
            replace_data_dir(&r, |_| async { panic!("the tool ran again") })
                .await
                .unwrap();
            assert_eq!(db(&r.data_dir), "fresh", "{layout:?}");
            assert_eq!(aside_db(&r), "old");
            assert!(!r.staging_dir.exists(), "{layout:?}");
        }
    }

    #[tokio::test]
    async fn a_failing_tool_leaves_the_old_member_data_in_place() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), true);
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
    }

    #[tokio::test]
    async fn no_old_member_data_means_nothing_to_move_aside() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), false);
            replace_data_dir(&r, fresh).await.unwrap();
            assert_eq!(db(&r.data_dir), "fresh");
            assert!(!r.moved_aside_to.exists());
            replace_data_dir(&r, |_| async { panic!("the tool ran again") })
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn three_copies_at_once_are_refused_not_guessed() {
        for layout in LAYOUTS {
            let dir = tempfile::tempdir().unwrap();
            let r = record_in(layout, dir.path(), true);
            old_data(&r);
            fresh(r.staging_dir.clone()).await.unwrap();
            std::fs::create_dir_all(r.moved_aside_to.join("snap")).unwrap();
            let err = replace_data_dir(&r, fresh).await.unwrap_err();
            assert!(err.to_string().contains("all exist"), "{err}");
            assert_eq!(db(&r.data_dir), "old");
        }
    }

    #[test]
    fn mount_points_are_found_in_mountinfo() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
        assert!(!is_mount_point(&dir.path().join("missing")));
        assert!(is_mount_point(Path::new("/proc")));
        assert_eq!(unescape_mount_path(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
    }

    #[test]
    fn a_writable_dir_passes_the_probe_and_a_missing_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        probe_writable(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe is gone");
        assert!(probe_writable(&dir.path().join("missing")).is_err());
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
