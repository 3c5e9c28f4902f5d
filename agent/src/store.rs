//! The binary store: one directory per staged etcd version under
//! `<state_dir>/binaries/<version>/`, holding `etcd` (and `etcdctl`,
//! `etcdutl` when staged) plus `manifest.json` with each file's sha256.
//!
//! A file enters the store only through [`BinaryStore::stage`]: it is
//! written to a private temp dir first, hashed, run with `--version` to prove
//! it is the declared etcd program and version, and only then renamed into
//! place. A refused file leaves nothing behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steward_proto::EtcdVersion;
use tokio::sync::Mutex;

use crate::error::{AgentError, BinaryRefusal};
use crate::fsutil::{self, io_err};

/// How long a staged program may take to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The programs of an etcd release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// The server.
    Etcd,
    /// The client.
    Etcdctl,
    /// The offline utility (3.5+).
    Etcdutl,
}

impl Tool {
    /// The file name in a version dir.
    #[must_use]
    pub const fn file_name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Etcdctl => "etcdctl",
            Self::Etcdutl => "etcdutl",
        }
    }

    /// All tools, server first.
    pub const ALL: [Self; 3] = [Self::Etcd, Self::Etcdctl, Self::Etcdutl];
}

/// One staged file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `manifest.json` of one version dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version every file reported.
    pub version: EtcdVersion,
    /// When the first file was staged (ms since the epoch).
    pub staged_at_ms: i64,
    /// The staged files.
    pub files: BTreeMap<Tool, StagedFile>,
}

/// A file waiting to be staged: written, hashed, not yet verified.
#[derive(Debug)]
pub struct Incoming {
    dir: tempfile::TempDir,
    path: PathBuf,
    sha256: String,
    size: u64,
}

/// What the caller claims about a file.
#[derive(Clone, Debug)]
pub struct Declared {
    /// Which program.
    pub tool: Tool,
    /// The version it must report; `None` takes whatever it reports (used
    /// for the configured initial binary).
    pub version: Option<EtcdVersion>,
    /// The sha256 it must have, if given.
    pub sha256: Option<String>,
    /// The size it must have, if given.
    pub size: Option<u64>,
}

/// The store.
#[derive(Debug)]
pub struct BinaryStore {
    root: PathBuf,
    import_dirs: Vec<PathBuf>,
    /// Per version, the only sha256 values its files may have.
    pinned: BTreeMap<EtcdVersion, Vec<String>>,
    /// Serialises changes to version dirs and manifests.
    write_lock: Mutex<()>,
}

impl BinaryStore {
    /// Refuses, from now on, any file of a version in `pinned` whose
    /// sha256 is not listed for it (lowercase hex).
    #[must_use]
    pub fn with_pinned(mut self, pinned: BTreeMap<EtcdVersion, Vec<String>>) -> Self {
        self.pinned = pinned;
        self
    }

    /// Opens (creating) the store under `root`; imports may only read from
    /// `import_dirs`.
    pub fn open(root: PathBuf, import_dirs: Vec<PathBuf>) -> Result<Self, AgentError> {
        fsutil::ensure_dir(&root, 0o700)?;
        // Temp dirs of an interrupted staging are garbage.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".incoming") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(Self {
            root,
            import_dirs,
            pinned: BTreeMap::new(),
            write_lock: Mutex::new(()),
        })
    }

    /// Every staged version, ascending.
    pub fn list(&self) -> Result<Vec<Manifest>, AgentError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(io_err("read directory", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // One unreadable manifest must not hide every other version.
            match self.manifest(&name) {
                Ok(Some(manifest)) => out.push(manifest),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(version = %name, error = %crate::error::error_chain(&error), "ignoring a staged version")
                }
            }
        }
        out.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(out)
    }

    /// The manifest of one version, if staged.
    pub fn manifest(&self, version: &str) -> Result<Option<Manifest>, AgentError> {
        let path = self.root.join(version).join("manifest.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| AgentError::CorruptState { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AgentError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The path of a staged tool, after checking it still hashes to what the
    /// manifest recorded (so a file changed on disk is never executed).
    pub fn verified_path(&self, version: &EtcdVersion, tool: Tool) -> Result<PathBuf, AgentError> {
        let manifest = self
            .manifest(&version.to_string())?
            .ok_or_else(|| self.not_staged(version))?;
        let Some(recorded) = manifest.files.get(&tool) else {
            return Err(AgentError::VersionNotStaged {
                version: format!("{version} ({} missing)", tool.file_name()),
                staged: self.staged_summary(),
            });
        };
        let path = self.root.join(version.to_string()).join(tool.file_name());
        let (sha256, _) = hash_file(&path)?;
        if sha256 != recorded.sha256 {
            return Err(AgentError::BinaryChanged {
                path,
                staged: recorded.sha256.clone(),
                actual: sha256,
            });
        }
        Ok(path)
    }

    /// The path of a staged tool without re-hashing (for tools run on
    /// snapshot files, not for etcd itself).
    #[must_use]
    pub fn tool_path(&self, version: &EtcdVersion, tool: Tool) -> Option<PathBuf> {
        let manifest = self.manifest(&version.to_string()).ok().flatten()?;
        manifest
            .files
            .contains_key(&tool)
            .then(|| self.root.join(version.to_string()).join(tool.file_name()))
    }

    fn not_staged(&self, version: &EtcdVersion) -> AgentError {
        AgentError::VersionNotStaged {
            version: version.to_string(),
            staged: self.staged_summary(),
        }
    }

    /// "3.4.23, 3.5.16" or "none".
    #[must_use]
    pub fn staged_summary(&self) -> String {
        let versions: Vec<String> = self
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.files.contains_key(&Tool::Etcd))
            .map(|m| m.version.to_string())
            .collect();
        if versions.is_empty() {
            "none".to_owned()
        } else {
            versions.join(", ")
        }
    }

    /// Checks an import path and copies the file into a private temp dir,
    /// on a blocking thread: the copy, its hash and its fsync hold the disk
    /// for a while, and would hold up every other call of the runtime
    /// thread they ran on. At most `max_bytes` are copied; a larger file is
    /// refused.
    pub async fn receive_import(&self, path: &str, max_bytes: u64) -> Result<Incoming, AgentError> {
        let root = self.root.clone();
        let import_dirs = self.import_dirs.clone();
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || Self::import_into(&root, &import_dirs, &owned, max_bytes))
            .await
            .map_err(|join| io_err("copy", Path::new(path))(std::io::Error::other(join)))?
    }

    fn import_into(root: &Path, import_dirs: &[PathBuf], path: &str, max_bytes: u64) -> Result<Incoming, AgentError> {
        use std::io::Read;
        // One descriptor, opened beneath its import dir, is checked, hashed
        // and copied: nothing swapped in meanwhile is read.
        let (reader, source) = Self::open_import(import_dirs, path)?;
        let metadata = reader.metadata().map_err(io_err("stat", &source))?;
        if metadata.len() > max_bytes {
            return Err(BinaryRefusal::TooLarge {
                limit: max_bytes,
                size: metadata.len(),
            }
            .into());
        }
        let mut incoming = Self::incoming_in(root)?;
        let mut writer = IncomingWriter::create(&incoming.path)?;
        let copied = std::io::copy(&mut reader.take(max_bytes + 1), &mut writer).map_err(io_err("copy", &source))?;
        if copied > max_bytes {
            return Err(BinaryRefusal::TooLarge {
                limit: max_bytes,
                size: copied,
            }
            .into());
        }
        writer.finish(&mut incoming)?;
        Ok(incoming)
    }

    /// A temp file that an upload writes into chunk by chunk.
    pub fn receive_upload(&self) -> Result<(Incoming, IncomingWriter), AgentError> {
        let incoming = Self::incoming_in(&self.root)?;
        let writer = IncomingWriter::create(&incoming.path)?;
        Ok((incoming, writer))
    }

    fn incoming_in(root: &Path) -> Result<Incoming, AgentError> {
        let dir = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(root)
            .map_err(io_err("create temp dir in", root))?;
        let path = dir.path().join("binary");
        Ok(Incoming {
            dir,
            path,
            sha256: String::new(),
            size: 0,
        })
    }

    /// Verifies an incoming file against what was declared and moves it
    /// into the store. Returns the version's manifest and whether the same
    /// file was staged already.
    pub async fn stage(&self, incoming: Incoming, declared: &Declared) -> Result<(Manifest, bool), AgentError> {
        if let Some(size) = declared.size
            && size != incoming.size
        {
            return Err(BinaryRefusal::SizeMismatch {
                declared: size,
                actual: incoming.size,
            }
            .into());
        }
        if let Some(expected) = &declared.sha256
            && !expected.eq_ignore_ascii_case(&incoming.sha256)
        {
            return Err(BinaryRefusal::ShaMismatch {
                declared: expected.clone(),
                actual: incoming.sha256.clone(),
            }
            .into());
        }
        // A file of a pinned version must be one of its pinned files before
        // it ever runs: asking it for its version runs it, as the agent's
        // user, with whatever it does besides.
        if let Some(version) = &declared.version {
            self.check_pinned(declared.tool, version, &incoming.sha256)?;
        }
        std::fs::set_permissions(&incoming.path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &incoming.path))?;
        let reported = reported_version(&incoming.path, declared.tool).await?;
        if let Some(version) = &declared.version
            && *version != reported
        {
            return Err(BinaryRefusal::VersionMismatch {
                declared: version.to_string(),
                reported: reported.to_string(),
            }
            .into());
        }

        // A file staged without a declared version (the config's
        // initial_binary) is checked once its version is known.
        self.check_pinned(declared.tool, &reported, &incoming.sha256)?;

        let _guard = self.write_lock.lock().await;
        let version_dir = self.root.join(reported.to_string());
        let file = StagedFile {
            sha256: incoming.sha256.clone(),
            size: incoming.size,
        };
        let existing = self.manifest(&reported.to_string())?;
        if let Some(manifest) = &existing
            && let Some(staged) = manifest.files.get(&declared.tool)
        {
            if staged.sha256 == file.sha256 {
                // Same file again: nothing to do (the temp dir goes away).
                return Ok((manifest.clone(), true));
            }
            return Err(AgentError::AlreadyStaged {
                tool: declared.tool.file_name(),
                version: reported.to_string(),
                existing: staged.sha256.clone(),
                new: file.sha256,
            });
        }
        let mut manifest = existing.unwrap_or_else(|| Manifest {
            version: reported.clone(),
            staged_at_ms: now_ms(),
            files: BTreeMap::new(),
        });
        manifest.files.insert(declared.tool, file);
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|source| AgentError::CorruptState {
            path: version_dir.join("manifest.json"),
            source,
        })?;
        let target = version_dir.join(declared.tool.file_name());
        if version_dir.exists() {
            fsutil::rename_durable(&incoming.path, &target)?;
            fsutil::write_atomic(&version_dir.join("manifest.json"), &manifest_bytes, 0o600)?;
        } else {
            // A new version appears complete or not at all: build the whole
            // dir inside the temp dir, then rename it into place.
            let staging = incoming.dir.path();
            std::fs::rename(&incoming.path, staging.join(declared.tool.file_name()))
                .map_err(io_err("rename", &incoming.path))?;
            fsutil::write_atomic(&staging.join("manifest.json"), &manifest_bytes, 0o600)?;
            let staging = incoming.dir.keep();
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", &staging))?;
            if let Err(error) = fsutil::rename_durable(&staging, &version_dir) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(error);
            }
        }
        tracing::info!(version = %reported, tool = declared.tool.file_name(), "staged binary");
        Ok((manifest, false))
    }

    /// Refuses a file of a pinned `version` whose sha256 is not pinned.
    fn check_pinned(&self, tool: Tool, version: &EtcdVersion, sha256: &str) -> Result<(), AgentError> {
        match self.pinned.get(version) {
            Some(allowed) if !allowed.iter().any(|sha| sha.eq_ignore_ascii_case(sha256)) => {
                Err(BinaryRefusal::NotPinned {
                    tool: tool.file_name(),
                    version: version.to_string(),
                    sha256: sha256.to_owned(),
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// Opens `path` for an import: it must be absolute, without `..` or
    /// NUL, and lie inside one of `import_dirs`. It is opened relative to
    /// a handle on that import dir, so that nothing swapped in along the way
    /// can lead outside it: with openat2(RESOLVE_BENEATH) where the kernel
    /// has it (a symlink that stays inside the dir is followed, one that
    /// leaves it or is absolute is refused), else one component at a time
    /// with O_NOFOLLOW (no symlink at all). What was opened must be a
    /// regular file; everything after reads that one descriptor. Returns it
    /// with the path it was opened at.
    ///
    /// # Errors
    /// [`BinaryRefusal::Path`] saying why.
    pub fn open_import(import_dirs: &[PathBuf], path: &str) -> Result<(std::fs::File, PathBuf), AgentError> {
        let refuse = |reason: &str| -> AgentError {
            BinaryRefusal::Path {
                path: crate::bounded::bounded(path, crate::bounded::LOG_TEXT),
                reason: reason.to_owned(),
            }
            .into()
        };
        if path.is_empty() {
            return Err(refuse("empty"));
        }
        if path.contains('\0') {
            return Err(refuse("contains a NUL byte"));
        }
        let given = Path::new(path);
        if !given.is_absolute() {
            return Err(refuse("must be absolute"));
        }
        if given.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("contains a '..' component"));
        }
        if import_dirs.is_empty() {
            return Err(refuse("no import_dirs are configured on this agent"));
        }
        for dir in import_dirs {
            let Ok(canonical) = std::fs::canonicalize(dir) else {
                continue;
            };
            let Ok(inside) = given.strip_prefix(dir).or_else(|_| given.strip_prefix(&canonical)) else {
                continue;
            };
            if inside.as_os_str().is_empty() {
                return Err(refuse("is an import dir, not a file in it"));
            }
            let file = crate::beneath::open_beneath(&canonical, inside).map_err(|error| {
                refuse(&match error {
                    crate::beneath::BeneathError::Outside => format!(
                        "leads outside the import dir {} (a symlink on the way, or one swapped in)",
                        dir.display()
                    ),
                    crate::beneath::BeneathError::Io(error) => format!("cannot be opened: {error}"),
                })
            })?;
            let metadata = file.metadata().map_err(|e| refuse(&format!("cannot be read: {e}")))?;
            if !metadata.is_file() {
                return Err(refuse("is not a regular file"));
            }
            return Ok((file, canonical.join(inside)));
        }
        let dirs: Vec<String> = import_dirs.iter().map(|d| d.display().to_string()).collect();
        Err(refuse(&format!("is outside the import dirs ({})", dirs.join(", "))))
    }
}

/// Writes an incoming file while hashing it.
#[derive(Debug)]
pub struct IncomingWriter {
    file: std::fs::File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl IncomingWriter {
    fn create(path: &Path) -> Result<Self, AgentError> {
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(path)
            .map_err(io_err("create", path))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Bytes written so far.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Appends a chunk.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), AgentError> {
        self.write_all(chunk).map_err(io_err("write", &self.path))
    }

    /// Flushes to disk and records the hash and size in `incoming`.
    pub fn finish(self, incoming: &mut Incoming) -> Result<(), AgentError> {
        self.file.sync_all().map_err(io_err("fsync", &self.path))?;
        incoming.sha256 = hex::encode(self.hasher.finalize());
        incoming.size = self.size;
        Ok(())
    }
}

impl Write for IncomingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

trait CreateMode {
    fn mode_0600(&mut self) -> &mut Self;
}

impl CreateMode for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// sha256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64), AgentError> {
    let mut file = std::fs::File::open(path).map_err(io_err("open", path))?;
    crate::hashing::sha256_reader(&mut file).map_err(io_err("read", path))
}

/// Runs the program the way its release prints its version and parses the
/// answer: `etcd --version` ("etcd Version: 3.4.23"), `etcdctl version`
/// ("etcdctl version: 3.4.23"), `etcdutl version`.
pub async fn reported_version(path: &Path, tool: Tool) -> Result<EtcdVersion, AgentError> {
    let not_etcd = |reason: String| {
        AgentError::from(BinaryRefusal::NotEtcd {
            tool: tool.file_name(),
            reason,
        })
    };
    let mut command = tokio::process::Command::new(path);
    match tool {
        Tool::Etcd => command.arg("--version"),
        Tool::Etcdctl | Tool::Etcdutl => command.arg("version"),
    };
    // etcdctl 3.3 speaks the v2 API unless told otherwise. The probe runs
    // in a process group of its own, which is killed whole once it has
    // answered or timed out: nothing it started outlives the question.
    command
        .env("ETCDCTL_API", "3")
        .kill_on_drop(true)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // ETXTBSY: another thread forked while this file was still open for
    // writing, and its child holds the descriptor until it execs. That
    // passes in moments.
    let mut attempts = 0;
    let child = loop {
        match command.spawn() {
            Ok(child) => break child,
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(error) => return Err(not_etcd(format!("cannot run it: {error}"))),
        }
    };
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let answered = tokio::time::timeout(VERSION_TIMEOUT, child.wait_with_output()).await;
    if let Some(group) = group {
        // ESRCH when nothing of it is left: fine.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
    }
    let output = match answered {
        Err(_) => {
            return Err(not_etcd(format!(
                "`{} version` did not answer within {VERSION_TIMEOUT:?}",
                tool.file_name()
            )));
        }
        Ok(Err(error)) => return Err(not_etcd(format!("cannot run it: {error}"))),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        return Err(not_etcd(format!("asking for its version ended with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version_output(&text, tool).ok_or_else(|| {
        let first = text.lines().next().unwrap_or("").chars().take(120).collect::<String>();
        not_etcd(format!("unexpected version output {first:?}"))
    })
}

/// Finds "<tool> version: X.Y.Z" (any case) in a version output.
#[must_use]
pub fn parse_version_output(text: &str, tool: Tool) -> Option<EtcdVersion> {
    let prefix = format!("{} version:", tool.file_name());
    text.lines().find_map(|line| {
        let line = line.trim();
        let head = line.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(&prefix) {
            return None;
        }
        line[prefix.len()..].trim().parse().ok()
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_tools_version_line() {
        let etcd = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19\n";
        assert_eq!(parse_version_output(etcd, Tool::Etcd), Some(EtcdVersion::new(3, 4, 23)));
        let ctl = "etcdctl version: 3.5.16\nAPI version: 3.5\n";
        assert_eq!(
            parse_version_output(ctl, Tool::Etcdctl),
            Some(EtcdVersion::new(3, 5, 16))
        );
        assert_eq!(parse_version_output(ctl, Tool::Etcd), None);
        assert_eq!(parse_version_output("hello\n", Tool::Etcdutl), None);
    }

    fn store_with_import_dir() -> (tempfile::TempDir, BinaryStore, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let import = dir.path().join("import");
        std::fs::create_dir(&import).unwrap();
        let store = BinaryStore::open(dir.path().join("binaries"), vec![import.clone()]).unwrap();
        (dir, store, import)
    }

    #[test]
    fn import_paths_are_confined() {
        let (dir, store, import) = store_with_import_dir();
        let inside = import.join("etcd");
        std::fs::write(&inside, b"x").unwrap();
        let outside = dir.path().join("etcd");
        std::fs::write(&outside, b"x").unwrap();
        std::os::unix::fs::symlink(&outside, import.join("link")).unwrap();
        std::fs::create_dir(import.join("3.5.30")).unwrap();
        std::fs::write(import.join("3.5.30/etcd"), b"y").unwrap();
        std::os::unix::fs::symlink("3.5.30", import.join("current")).unwrap();
        let open = |path: &str| BinaryStore::open_import(&store.import_dirs, path);

        assert!(open(inside.to_str().unwrap()).is_ok());
        let (_, at) = open(import.join("current/etcd").to_str().unwrap()).unwrap();
        assert!(
            at.ends_with("current/etcd"),
            "a symlink that stays inside: {}",
            at.display()
        );
        for (path, reason) in [
            (outside.to_str().unwrap().to_owned(), "outside the import dirs"),
            (format!("{}/../etcd", import.display()), "'..'"),
            (
                import.join("link").to_str().unwrap().to_owned(),
                "leads outside the import dir",
            ),
            ("relative/etcd".to_owned(), "absolute"),
            (format!("{}\0x", inside.display()), "NUL"),
            (import.display().to_string(), "is an import dir"),
            (import.join("3.5.30").display().to_string(), "not a regular file"),
        ] {
            let err = crate::error::error_chain(&open(&path).unwrap_err());
            assert!(err.contains(reason), "{path:?}: {err}");
        }
    }

    /// The race the check-then-open left: a parent directory swapped for
    /// a symlink to outside between the check and the open.
    #[tokio::test]
    async fn a_parent_swapped_for_a_symlink_never_leads_outside() {
        let (dir, store, import) = store_with_import_dir();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("etcd"), b"secret").unwrap();
        let real = import.join("sub");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("etcd"), b"inside").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (import, outside, stop) = (import.clone(), outside.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let sub = import.join("sub");
                let parked = import.join("sub.real");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::rename(&sub, &parked);
                    let _ = std::os::unix::fs::symlink(&outside, &sub);
                    let _ = std::fs::remove_file(&sub);
                    let _ = std::fs::rename(&parked, &sub);
                }
            })
        };
        let path = import.join("sub/etcd").display().to_string();
        let mut opened = 0;
        let mut leaked = 0;
        for _ in 0..3000 {
            if let Ok(incoming) = store.receive_import(&path, 1 << 20).await {
                opened += 1;
                if std::fs::read(&incoming.path).unwrap() != b"inside" {
                    leaked += 1;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(
            leaked, 0,
            "{leaked} of {opened} imports copied the file outside the import dir"
        );
        assert!(opened > 0, "the file inside was never opened");
    }

    #[tokio::test]
    async fn refused_files_leave_nothing_behind() {
        let (_dir, store, import) = store_with_import_dir();
        let script = import.join("not-etcd");
        std::fs::write(&script, b"#!/bin/sh\necho hello\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let incoming = store.receive_import(script.to_str().unwrap(), 1 << 20).await.unwrap();
        let declared = Declared {
            tool: Tool::Etcd,
            version: Some(EtcdVersion::new(3, 5, 16)),
            sha256: None,
            size: None,
        };
        let err = crate::error::error_chain(&store.stage(incoming, &declared).await.unwrap_err());
        assert!(err.contains("not an etcd binary"), "{err}");
        let left: Vec<_> = std::fs::read_dir(&store.root).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_pinned_version_takes_only_its_pinned_checksums() {
        let (_dir, store, import) = store_with_import_dir();
        let script = import.join("etcd");
        std::fs::write(&script, b"#!/bin/sh\necho 'etcd Version: 3.5.16'\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let declared = Declared {
            tool: Tool::Etcd,
            version: Some(EtcdVersion::new(3, 5, 16)),
            sha256: None,
            size: None,
        };
        let pinned = |sha: &str| BTreeMap::from([(EtcdVersion::new(3, 5, 16), vec![sha.to_owned()])]);
        let store = store.with_pinned(pinned(&"0".repeat(64)));
        let incoming = store.receive_import(script.to_str().unwrap(), 1 << 20).await.unwrap();
        let actual = incoming.sha256.clone();
        let err = crate::error::error_chain(&store.stage(incoming, &declared).await.unwrap_err());
        assert!(err.contains("pinned_sha256") && err.contains(&actual), "{err}");
        assert!(
            std::fs::read_dir(&store.root).unwrap().next().is_none(),
            "nothing staged"
        );

        let store = store.with_pinned(pinned(&actual.to_uppercase()));
        let incoming = store.receive_import(script.to_str().unwrap(), 1 << 20).await.unwrap();
        let (manifest, _) = store.stage(incoming, &declared).await.unwrap();
        assert_eq!(manifest.version, EtcdVersion::new(3, 5, 16));
    }

    fn script(import: &Path, name: &str, body: &str) -> PathBuf {
        let path = import.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn declared(version: EtcdVersion) -> Declared {
        Declared {
            tool: Tool::Etcd,
            version: Some(version),
            sha256: None,
            size: None,
        }
    }

    #[tokio::test]
    async fn an_unpinned_file_of_a_pinned_version_never_runs() {
        let (dir, store, import) = store_with_import_dir();
        let ran = dir.path().join("it-ran");
        let claims = script(
            &import,
            "etcd",
            &format!("touch {}\necho 'etcd Version: 3.5.16'", ran.display()),
        );
        let store = store.with_pinned(BTreeMap::from([(EtcdVersion::new(3, 5, 16), vec!["0".repeat(64)])]));
        let incoming = store.receive_import(claims.to_str().unwrap(), 1 << 20).await.unwrap();
        let err = crate::error::error_chain(
            &store
                .stage(incoming, &declared(EtcdVersion::new(3, 5, 16)))
                .await
                .unwrap_err(),
        );
        assert!(err.contains("pinned_sha256"), "{err}");
        assert!(!ran.exists(), "the unpinned file ran before it was refused");
    }

    #[tokio::test]
    async fn a_version_probe_leaves_nothing_running() {
        let (dir, store, import) = store_with_import_dir();
        let later = dir.path().join("ran-later");
        let lingers = script(
            &import,
            "etcd",
            &format!(
                "(sleep 1; touch {}) >/dev/null 2>&1 &\necho 'etcd Version: 3.5.17'",
                later.display()
            ),
        );
        let incoming = store.receive_import(lingers.to_str().unwrap(), 1 << 20).await.unwrap();
        let (manifest, _) = store
            .stage(incoming, &declared(EtcdVersion::new(3, 5, 17)))
            .await
            .unwrap();
        assert_eq!(manifest.version, EtcdVersion::new(3, 5, 17));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!later.exists(), "what the probe started in the background outlived it");
    }

    #[tokio::test]
    async fn imports_above_the_size_limit_are_refused() {
        let (_dir, store, import) = store_with_import_dir();
        let big = import.join("big");
        std::fs::write(&big, vec![0_u8; 4096]).unwrap();
        let err = crate::error::error_chain(&store.receive_import(big.to_str().unwrap(), 1024).await.unwrap_err());
        assert!(err.contains("max_binary_bytes"), "{err}");
        assert!(store.receive_import(big.to_str().unwrap(), 4096).await.is_ok());
    }
}
