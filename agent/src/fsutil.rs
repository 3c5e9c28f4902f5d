//! Small file helpers for writes that must never be seen half done: write a
//! temp file in the same directory, fsync it, rename it over the target, and
//! fsync the directory so the rename itself survives a crash.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::AgentError;

/// Maps an I/O error to [`AgentError::Io`] with the action and path.
pub fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AgentError + 'a {
    move |source| AgentError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Atomically replaces `path` with `bytes`, with the given file mode.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let dir = parent(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create temp file in", dir))?;
    temp.write_all(bytes).map_err(io_err("write", temp.path()))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", path))?;
    temp.as_file().sync_all().map_err(io_err("fsync", path))?;
    temp.persist(path).map_err(|e| AgentError::Io {
        action: "rename into",
        path: path.to_owned(),
        source: e.error,
    })?;
    fsync_dir(dir)
}

/// Renames `from` to `to` (same filesystem) and fsyncs the target directory.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), AgentError> {
    std::fs::rename(from, to).map_err(io_err("rename into", to))?;
    fsync_dir(parent(to))
}

/// fsyncs a directory, so renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates `dir` (and parents) if missing and sets its mode.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), AgentError> {
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
