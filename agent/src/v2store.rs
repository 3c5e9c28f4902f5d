//! The 3.6 upgrade guide's v2store check: `etcdutl check v2store` (3.5.32
//! or later) on the member's data, which says whether the v2 store or the
//! write-ahead log after its newest snapshot holds custom (non-membership)
//! v2 content that 3.6 refuses to start on.
//!
//! etcdutl wants "a data directory not in use by etcd". The agent gives it
//! a frozen view instead of stopping the member: a fresh directory of hard
//! links to the member's snapshot files and log segments, made next to the
//! data, so the set of files cannot change under the check (etcd creates
//! and purges segments as it runs). etcdutl only reads, and reads a log
//! whose last record is being written as a log that ends before it.

use std::path::{Path, PathBuf};

use steward_proto::EtcdVersion;

use crate::error::AgentError;

/// The oldest etcdutl whose `check v2store` also reads the log.
pub const MIN_TOOL: EtcdVersion = EtcdVersion::new(3, 5, 32);

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// No custom v2 content anywhere.
    pub clean: bool,
    /// etcdutl's verdict, e.g. "detected custom content in v2store".
    pub verdict: String,
}

/// The etcdutl to use among the staged versions: the newest 3.5 patch of
/// at least [`MIN_TOOL`] (3.6 and later have no `check v2store`).
#[must_use]
pub fn pick_tool<'a>(staged_with_etcdutl: impl IntoIterator<Item = &'a EtcdVersion>) -> Option<&'a EtcdVersion> {
    staged_with_etcdutl
        .into_iter()
        .filter(|v| v.minor_version() == (3, 5) && **v >= MIN_TOOL)
        .max()
}

/// A frozen view of the member's data for the check, removed on drop.
#[derive(Debug)]
pub struct FrozenView {
    root: PathBuf,
}

impl FrozenView {
    /// Links `member/snap/*.snap` and the log segments (`member/wal/*.wal`,
    /// or those of `wal_dir`) into `<data_dir>/.v2store-check-<pid>`.
    ///
    /// # Errors
    /// When the directory cannot be made or a file cannot be linked.
    pub fn new(data_dir: &Path, wal_dir: Option<&Path>) -> Result<Self, AgentError> {
        let root = data_dir.join(format!(".v2store-check-{}", std::process::id()));
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| AgentError::Io {
                action: what,
                path,
                source,
            }
        };
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io("remove an old check view", &root))?;
        }
        let view = Self { root };
        let snap_to = view.root.join("member").join("snap");
        let wal_to = view.root.join("member").join("wal");
        for dir in [&snap_to, &wal_to] {
            std::fs::create_dir_all(dir).map_err(io("create the check view", dir))?;
        }
        let member = data_dir.join("member");
        let wal_from = wal_dir.map_or_else(|| member.join("wal"), Path::to_owned);
        for (from, to, extension) in [(member.join("snap"), &snap_to, "snap"), (wal_from, &wal_to, "wal")] {
            let Ok(entries) = std::fs::read_dir(&from) else {
                continue; // no data yet: nothing to link
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == extension) && path.is_file() {
                    let target = to.join(entry.file_name());
                    // A log on another file system (--wal-dir) is copied.
                    std::fs::hard_link(&path, &target)
                        .or_else(|_| std::fs::copy(&path, &target).map(drop))
                        .map_err(io("link a file into the check view", &path))?;
                }
            }
        }
        Ok(view)
    }

    /// The data dir to give etcdutl.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.root
    }
}

impl Drop for FrozenView {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(path = %self.root.display(), %error, "cannot remove the v2store check view");
        }
    }
}

/// Runs `etcdutl check v2store` on `view`.
///
/// # Errors
/// When etcdutl cannot be run or says something the check does not know.
pub async fn run(etcdutl: &Path, view: &FrozenView) -> Result<Finding, AgentError> {
    let output = tokio::process::Command::new(etcdutl)
        .args(["check", "v2store", "--data-dir"])
        .arg(view.data_dir())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AgentError::Tool {
            tool: "etcdutl check v2store".into(),
            reason: e.to_string(),
        })?;
    interpret(
        output.status.code(),
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    )
    .map_err(|reason| AgentError::Tool {
        tool: "etcdutl check v2store".into(),
        reason,
    })
}

/// Reads etcdutl's answer: exit 0 with "No custom content found", or exit
/// 1 with one of the guide's three "detected custom ..." verdicts. Anything
/// else is an error: the guide says to stop and investigate.
fn interpret(code: Option<i32>, stdout: &str, stderr: &str) -> Result<Finding, String> {
    const CLEAN: &str = "No custom content found";
    const DETECTED: &str = "detected custom";
    match code {
        Some(0) if stdout.contains(CLEAN) => Ok(Finding {
            clean: true,
            verdict: stdout.trim().trim_end_matches('.').to_owned(),
        }),
        Some(1) => {
            let line = stderr
                .lines()
                .chain(stdout.lines())
                .find(|l| l.contains(DETECTED))
                .ok_or_else(|| format!("exit 1 without a verdict: {}", stderr.trim()))?;
            let verdict = line[line.find(DETECTED).unwrap_or(0)..].trim().to_owned();
            Ok(Finding { clean: false, verdict })
        }
        other => Err(format!(
            "unexpected answer (exit {}): {} {}",
            other.map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
            stdout.trim(),
            stderr.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    #[test]
    fn the_newest_3_5_of_at_least_3_5_32_is_the_tool() {
        let staged = [v("3.5.16"), v("3.5.32"), v("3.5.36"), v("3.6.17")];
        assert_eq!(pick_tool(&staged), Some(&v("3.5.36")));
        assert_eq!(pick_tool(&[v("3.5.30"), v("3.6.17")]), None, "3.6 has no check v2store");
    }

    #[test]
    fn etcdutls_answers_are_read() {
        let clean = interpret(
            Some(0),
            "No custom content found in both v2store and WAL records.\n",
            "",
        );
        assert_eq!(
            clean,
            Ok(Finding {
                clean: true,
                verdict: "No custom content found in both v2store and WAL records".into()
            })
        );
        let dirty = interpret(Some(1), "", "Error: detected custom content in v2store\n").unwrap();
        assert!(!dirty.clean);
        assert_eq!(dirty.verdict, "detected custom content in v2store");
        let both = interpret(
            Some(1),
            "",
            "Error: detected custom v2 content in both v2store and WAL records",
        )
        .unwrap();
        assert_eq!(
            both.verdict,
            "detected custom v2 content in both v2store and WAL records"
        );
        assert!(interpret(Some(1), "", "Error: failed to open WAL: permission denied").is_err());
        assert!(interpret(Some(2), "", "").is_err());
        assert!(interpret(None, "", "").is_err());
    }

    #[test]
    fn the_view_links_snapshots_and_segments_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let member = dir.path().join("member");
        std::fs::create_dir_all(member.join("snap")).unwrap();
        std::fs::create_dir_all(member.join("wal")).unwrap();
        std::fs::write(member.join("snap/0000000000000002-0000000000000010.snap"), b"s").unwrap();
        std::fs::write(member.join("snap/db"), b"big").unwrap();
        std::fs::write(member.join("wal/0000000000000000-0000000000000000.wal"), b"w").unwrap();
        let root = {
            let view = FrozenView::new(dir.path(), None).unwrap();
            let root = view.data_dir().to_owned();
            assert!(
                root.join("member/snap/0000000000000002-0000000000000010.snap")
                    .is_file()
            );
            assert!(root.join("member/wal/0000000000000000-0000000000000000.wal").is_file());
            assert!(!root.join("member/snap/db").exists(), "the database is not needed");
            root
        };
        assert!(!root.exists(), "removed on drop");
        let empty = tempfile::tempdir().unwrap();
        assert!(FrozenView::new(empty.path(), None).is_ok(), "no data yet is no error");
    }
}
