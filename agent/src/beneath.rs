//! Opening a file inside a directory so that nothing on the way can lead
//! outside it, whatever is swapped in between a check and the open: the
//! kernel resolves the path relative to a handle on the directory.
//!
//! With openat2 (Linux 5.6 and later), `RESOLVE_BENEATH` makes the kernel
//! refuse any step out of the directory (a `..`, an absolute symlink, a
//! relative one that climbs out), and `RESOLVE_NO_MAGICLINKS` the
//! `/proc/self/fd` kind; a symlink that stays inside is followed. Without
//! openat2, each component is opened in turn with `O_NOFOLLOW`, which
//! refuses every symlink.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::Mode;

/// Why a file could not be opened beneath its directory.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// The path leads outside the directory, or through a symlink where
    /// none may be followed.
    #[error("leads outside the directory")]
    Outside,
    /// Any other failure (missing, no permission).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Opens `inside` (relative, no `..`) beneath `dir` for reading, refusing
/// a symlink as the last component.
///
/// # Errors
/// [`BeneathError::Outside`] when the path would leave `dir`; the I/O
/// error otherwise.
pub fn open_beneath(dir: &Path, inside: &Path) -> Result<std::fs::File, BeneathError> {
    let dir = open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&dir, inside, how) {
        Ok(fd) => Ok(fd.into()),
        Err(Errno::ENOSYS) => walk(dir, inside, flags).map(Into::into),
        Err(Errno::EXDEV | Errno::ELOOP) => Err(BeneathError::Outside),
        Err(other) => Err(errno(other)),
    }
}

/// One component at a time, none of them a symlink.
fn walk(dir: OwnedFd, inside: &Path, last: OFlag) -> Result<OwnedFd, BeneathError> {
    let parts: Vec<&OsStr> = inside
        .components()
        .map(|c| match c {
            Component::Normal(part) => Ok(part),
            _ => Err(BeneathError::Outside),
        })
        .collect::<Result<_, _>>()?;
    let mut current = dir;
    for (i, part) in parts.iter().enumerate() {
        let flags = if i + 1 == parts.len() {
            last
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
        };
        current = match openat(current.as_fd(), *part, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) if i + 1 < parts.len() => return Err(BeneathError::Outside),
            Err(Errno::ELOOP) => return Err(BeneathError::Outside),
            Err(other) => return Err(errno(other)),
        };
    }
    Ok(current)
}

fn errno(error: Errno) -> BeneathError {
    BeneathError::Io(std::io::Error::from(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_leads_out_and_what_stays_inside_opens() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("import");
        std::fs::create_dir_all(dir.join("3.5.30")).unwrap();
        std::fs::write(dir.join("3.5.30/etcd"), b"inside").unwrap();
        std::fs::write(root.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("3.5.30", dir.join("current")).unwrap();
        std::os::unix::fs::symlink(root.path(), dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("climb")).unwrap();

        let read = |inside: &str| open_beneath(&dir, Path::new(inside)).map(|f| std::io::read_to_string(f).unwrap());
        assert_eq!(read("3.5.30/etcd").unwrap(), "inside");
        assert_eq!(read("current/etcd").unwrap(), "inside", "a symlink that stays inside");
        assert!(matches!(read("escape/secret"), Err(BeneathError::Outside)));
        assert!(matches!(read("climb"), Err(BeneathError::Outside)));
        assert!(matches!(read("missing"), Err(BeneathError::Io(_))));

        // Without openat2: no symlink at all.
        let walk_read = |inside: &str| {
            let fd = open(dir.as_path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            walk(fd, Path::new(inside), OFlag::O_RDONLY | OFlag::O_NOFOLLOW)
                .map(|fd| std::io::read_to_string(std::fs::File::from(fd)).unwrap())
        };
        assert_eq!(walk_read("3.5.30/etcd").unwrap(), "inside");
        assert!(matches!(walk_read("current/etcd"), Err(BeneathError::Outside)));
        assert!(matches!(walk_read("escape/secret"), Err(BeneathError::Outside)));
        assert!(matches!(walk_read("climb"), Err(BeneathError::Outside)));
    }
}
