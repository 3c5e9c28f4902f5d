//! Fake etcd executables, for the failures real etcd cannot be made to
//! produce on demand. Each is a real executable script; each answers
//! `--version` like the release it pretends to be, so the agent's store
//! accepts it, and misbehaves when run as a server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn write_script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    path.to_owned()
}

/// Claims `version` and exits with status 1 at once when started.
#[must_use]
pub fn exits_at_once(dir: &Path, version: &str) -> PathBuf {
    write_script(
        &dir.join(format!("etcd-exits-{version}")),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"etcd Version: {version}\"; exit 0; fi\n\
             echo \"fake etcd {version}: failing on purpose at startup\" >&2\nexit 1\n"
        ),
    )
}

/// Claims `claimed` for `--version`, but runs the real etcd at `real` (of
/// another version) when started.
#[must_use]
pub fn reports_wrong_version(dir: &Path, claimed: &str, real: &Path) -> PathBuf {
    write_script(
        &dir.join(format!("etcd-claims-{claimed}")),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"etcd Version: {claimed}\"; exit 0; fi\n\
             exec \"{}\" \"$@\"\n",
            real.display()
        ),
    )
}

/// An executable that is not etcd at all.
#[must_use]
pub fn not_etcd(dir: &Path) -> PathBuf {
    write_script(&dir.join("not-etcd"), "#!/bin/sh\necho \"hello, I am not etcd\"\n")
}

/// Runs the real etcd at `real`, except for a member whose arguments
/// mention the text in the file `marker` (a cluster's directory): that one
/// exits with status 1 at once, as a broken release would on that cluster
/// only. Without the marker file it is the real etcd everywhere, which is
/// how a test "fixes" the fault.
#[must_use]
pub fn fails_where_marked(dir: &Path, real: &Path, marker: &Path) -> PathBuf {
    write_script(
        &dir.join("etcd"),
        &format!(
            "#!/bin/sh\nif [ -f \"{marker}\" ]; then\n  case \"$*\" in\n    *\"$(cat \"{marker}\")\"*)\n      \
             echo \"etcd: failing on purpose on a marked cluster\" >&2\n      exit 1;;\n  esac\nfi\n\
             exec \"{real}\" \"$@\"\n",
            marker = marker.display(),
            real = real.display()
        ),
    )
}
