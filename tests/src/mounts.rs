//! Small file systems for the scenarios that need a full disk or a
//! read-only mount: a tmpfs of a given size mounted on a directory of the
//! test, unmounted when dropped. Mounting needs root, which the test
//! machines give; without it the scenario fails and says so, it never
//! passes by skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as mount takes it: "64k", "1m") on `dir`
    /// (created if missing), read-only when `read_only`.
    ///
    /// # Panics
    /// When not root, or when mount fails.
    #[must_use]
    pub fn mount(dir: &Path, size: &str, read_only: bool) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this scenario mounts a tmpfs (a full or read-only file system) and needs root"
        );
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mode = if read_only { "ro" } else { "rw" };
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("{mode},size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap_or_else(|e| panic!("run mount: {e}"));
        assert!(status.success(), "mount a tmpfs on {}: {status}", dir.display());
        Self { dir: dir.to_owned() }
    }

    /// Where it is mounted.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fills the file system: writes a file until no space is left.
    ///
    /// # Panics
    /// When the file cannot be created.
    pub fn fill(&self) {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let block = vec![0_u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.flush();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process of the test may still hold a file open there.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
