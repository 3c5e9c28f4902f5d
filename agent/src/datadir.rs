//! Facts about the member's data dir that the upgrade rules need, and free
//! disk space.

use std::path::Path;

use steward_proto::v1::{DataDirFacts, DiskSpace};

/// Reads the data dir facts: is there v3 data (`member/snap/db`), is there
/// v2 data (`member/snap/*.snap`) and how big is the newest v2 snapshot.
#[must_use]
pub fn facts(data_dir: &Path) -> DataDirFacts {
    let snap_dir = data_dir.join("member").join("snap");
    let mut newest: Option<(std::time::SystemTime, u64)> = None;
    let mut v2_snap_present = false;
    if let Ok(entries) = std::fs::read_dir(&snap_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "snap")
                && let Ok(meta) = entry.metadata()
            {
                v2_snap_present = true;
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                if newest.is_none_or(|(t, _)| modified > t) {
                    newest = Some((modified, meta.len()));
                }
            }
        }
    }
    DataDirFacts {
        path: data_dir.display().to_string(),
        v3_db_present: snap_dir.join("db").is_file(),
        newest_v2_snap_bytes: newest.map_or(0, |(_, size)| size),
        v2_snap_present,
        initialised: data_dir.join("member").is_dir(),
    }
}

/// Free bytes (for unprivileged users) on the filesystems of both dirs.
#[must_use]
pub fn disk(state_dir: &Path, data_dir: &Path) -> DiskSpace {
    DiskSpace {
        state_dir_free_bytes: free_bytes(state_dir),
        data_dir_free_bytes: free_bytes(nearest_existing(data_dir)),
    }
}

/// Bytes free for unprivileged use on the file system of `path`; 0 when
/// it cannot be read.
#[must_use]
pub fn free_bytes(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path).map_or(0, |s| s.blocks_available().saturating_mul(s.fragment_size()))
}

fn nearest_existing(path: &Path) -> &Path {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_and_v3_facts() {
        let dir = tempfile::tempdir().unwrap();
        let facts0 = facts(dir.path());
        assert!(!facts0.initialised && !facts0.v3_db_present && !facts0.v2_snap_present);

        let snap = dir.path().join("member/snap");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("0000000000000002-0000000000000010.snap"), vec![0; 1234]).unwrap();
        let facts1 = facts(dir.path());
        assert!(facts1.initialised && facts1.v2_snap_present && !facts1.v3_db_present);
        assert_eq!(facts1.newest_v2_snap_bytes, 1234);

        std::fs::write(snap.join("db"), b"x").unwrap();
        assert!(facts(dir.path()).v3_db_present);
        assert!(disk(dir.path(), &dir.path().join("missing/deeper")).data_dir_free_bytes > 0);
    }
}
