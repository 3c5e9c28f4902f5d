//! A snapshot file the operator restores from: its shape and its trailer
//! (the sha256 it claims for its content) are read at once, and the
//! content is hashed against the trailer while the agents receive their
//! copies. Each agent checks its own copy against the same trailer, so the
//! copies need not wait for this hash; the restore awaits its verdict
//! before anything else relies on the snapshot.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use steward_proto::trailer::TRAILER_LEN;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What a snapshot file says of itself, before its content is hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The trailer: the sha256 the content should hash to, hex.
    pub sha256: String,
    /// The file's size, trailer included.
    pub size: u64,
}

/// Reads a snapshot file's size and trailer, checking its shape.
///
/// # Errors
/// The file cannot be read, or is not shaped like a snapshot.
pub async fn read_claim(path: &Path) -> Result<Claim, SnapshotFileError> {
    let unreadable = unreadable(path);
    let (mut file, size) = open_shaped(path).await?;
    let mut trailer = [0_u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(size - TRAILER_LEN as u64))
        .await
        .map_err(unreadable)?;
    file.read_exact(&mut trailer).await.map_err(unreadable)?;
    Ok(Claim {
        sha256: hex::encode(trailer),
        size,
    })
}

/// Checks a local snapshot file's sha256 trailer: its content sha256 and
/// size.
///
/// # Errors
/// The file cannot be read, or is not a snapshot (no trailer, a trailer
/// that does not match).
pub async fn verify_local(path: &Path) -> Result<(String, u64), SnapshotFileError> {
    let unreadable = unreadable(path);
    let (file, _) = open_shaped(path).await?;
    let hashed = crate::engine::transfer::download::hash_file(file.into_std().await)
        .await
        .map_err(unreadable)?;
    crate::engine::transfer::download::verify_trailer(hashed).map_err(|problem| SnapshotFileError::NotIntact {
        path: path.to_owned(),
        problem: problem.to_string(),
    })
}

/// The hash of a file's content against the trailer it claimed, running
/// in the background.
#[derive(Debug)]
pub struct LocalCheck {
    path: PathBuf,
    claim: Claim,
    hashing: tokio::task::JoinHandle<Result<(String, u64), SnapshotFileError>>,
}

impl LocalCheck {
    /// Starts hashing `path`, whose claim was read.
    #[must_use]
    pub fn start(path: PathBuf, claim: Claim) -> Self {
        let hashing = tokio::spawn({
            let path = path.clone();
            async move { verify_local(&path).await }
        });
        Self { path, claim, hashing }
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the hash: the content's sha256 and the size, which are
    /// the claimed ones.
    ///
    /// # Errors
    /// The content does not hash to its trailer, or the file changed since
    /// its claim was read, or cannot be read.
    pub async fn finish(self) -> Result<(String, u64), SnapshotFileError> {
        let (sha256, size) = self.hashing.await.map_err(|join| SnapshotFileError::Unreadable {
            path: self.path.clone(),
            source: std::io::Error::other(join),
        })??;
        if sha256 != self.claim.sha256 || size != self.claim.size {
            return Err(SnapshotFileError::NotIntact {
                path: self.path,
                problem: format!(
                    "it changed while it was read (first {} bytes with trailer {}, then {size} bytes with trailer \
                     {sha256})",
                    self.claim.size, self.claim.sha256
                ),
            });
        }
        Ok((sha256, size))
    }
}

fn unreadable(path: &Path) -> impl Fn(std::io::Error) -> SnapshotFileError + Copy + '_ {
    move |source| SnapshotFileError::Unreadable {
        path: path.to_owned(),
        source,
    }
}

/// Opens a snapshot file and returns it with its size, once its size is
/// a snapshot's (see [`check_shape`]).
async fn open_shaped(path: &Path) -> Result<(tokio::fs::File, u64), SnapshotFileError> {
    let unreadable = unreadable(path);
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let size = file.metadata().await.map_err(unreadable)?.len();
    check_shape(path, size)?;
    Ok((file, size))
}

/// A database is whole 512-byte sectors; the trailer adds 32 bytes.
fn check_shape(path: &Path, size: u64) -> Result<(), SnapshotFileError> {
    if size < 512 + TRAILER_LEN as u64 || size % 512 != TRAILER_LEN as u64 {
        return Err(SnapshotFileError::NotIntact {
            path: path.to_owned(),
            problem: format!(
                "{size} bytes is not a database plus a 32-byte sha256 trailer (truncated, or not a snapshot)"
            ),
        });
    }
    Ok(())
}

/// Why a local snapshot file cannot be restored from.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// It cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a whole snapshot with a matching trailer.
    #[error("{} is not an intact snapshot: {problem}", path.display())]
    NotIntact {
        /// The file.
        path: PathBuf,
        /// What does not match.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn snapshot_bytes(content: &[u8]) -> Vec<u8> {
        let mut bytes = content.to_vec();
        bytes.extend_from_slice(&Sha256::digest(content));
        bytes
    }

    #[tokio::test]
    async fn a_local_file_is_checked_against_its_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let content = vec![7_u8; 4096];
        let mut bytes = snapshot_bytes(&content);
        std::fs::write(&path, &bytes).unwrap();
        let (sha, size) = verify_local(&path).await.unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(&content)));
        assert_eq!(size, 4096 + 32);

        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            verify_local(&path)
                .await
                .unwrap_err()
                .to_string()
                .contains("not an intact snapshot")
        );
        std::fs::write(&path, &bytes[..100]).unwrap();
        assert!(verify_local(&path).await.is_err());
    }

    #[tokio::test]
    async fn a_claim_is_the_trailer_and_its_check_finds_a_content_that_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let content = vec![3_u8; 8192];
        let mut bytes = snapshot_bytes(&content);
        std::fs::write(&path, &bytes).unwrap();
        let claim = read_claim(&path).await.unwrap();
        assert_eq!(claim.sha256, hex::encode(Sha256::digest(&content)));
        assert_eq!(claim.size, 8192 + 32);
        assert_eq!(
            LocalCheck::start(path.clone(), claim.clone()).finish().await.unwrap(),
            (claim.sha256.clone(), claim.size)
        );

        // The trailer still claims the old content: the claim reads the
        // same, the check refuses the content.
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_claim(&path).await.unwrap(), claim);
        let refused = LocalCheck::start(path.clone(), claim.clone())
            .finish()
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("the content hashes to"), "{refused}");

        // Another whole snapshot put in its place after the claim.
        std::fs::write(&path, snapshot_bytes(&[4_u8; 8192])).unwrap();
        let refused = LocalCheck::start(path.clone(), claim).finish().await.unwrap_err();
        assert!(refused.to_string().contains("changed while it was read"), "{refused}");

        // A file of the wrong shape has no claim.
        std::fs::write(&path, b"not a snapshot").unwrap();
        assert!(
            read_claim(&path)
                .await
                .unwrap_err()
                .to_string()
                .contains("not a database plus a 32-byte sha256 trailer")
        );
    }
}
