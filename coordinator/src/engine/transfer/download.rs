//! Downloading a snapshot from an agent to a local file without ever
//! leaving a half-written or unverified file under the final name: the bytes
//! go to `FILE.part`, the sha256 trailer is checked as they stream, the file
//! is fsynced, and only then does it get its name (a hard link, which unlike
//! rename refuses to replace a file that appeared meanwhile).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use steward_proto::v1 as pb;
use tokio::io::AsyncWriteExt;

use crate::engine::connect::agent::AgentClients;
use crate::engine::error::Error;

/// etcd appends the sha256 of the snapshot content as its last 32 bytes.
pub const TRAILER_LEN: usize = 32;

pub use crate::engine::error::VerifyProblem;

/// Hashes a snapshot as it streams by: everything except the last
/// [`TRAILER_LEN`] bytes goes into sha256, the last bytes are held back as
/// the trailer. Constant memory, one pass.
#[derive(Debug, Default)]
pub struct TrailerHasher {
    content: Sha256,
    held: Vec<u8>,
    size: u64,
}

impl TrailerHasher {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        self.held.extend_from_slice(chunk);
        if self.held.len() > TRAILER_LEN {
            let cut = self.held.len() - TRAILER_LEN;
            self.content.update(&self.held[..cut]);
            self.held.drain(..cut);
        }
    }

    /// Checks the trailer against the content only (a file with no record
    /// to compare with). Returns the content's sha256, hex, and the size.
    ///
    /// # Errors
    /// The file is too short or its trailer does not match.
    pub fn verify_trailer(self) -> Result<(String, u64), VerifyProblem> {
        let size = self.size;
        if self.held.len() < TRAILER_LEN {
            return Err(VerifyProblem::TooShort { size });
        }
        let trailer = hex::encode(&self.held);
        let content = hex::encode(self.content.finalize());
        if trailer != content {
            return Err(VerifyProblem::TrailerMismatch { trailer, content });
        }
        Ok((content, size))
    }

    /// Checks the trailer against the content, and both against the agent's
    /// record (`sha256` hex and `size`). Returns the content's sha256, hex.
    ///
    /// # Errors
    /// The first [`VerifyProblem`] found.
    pub fn verify(self, recorded_sha256: &str, recorded_size: u64) -> Result<String, VerifyProblem> {
        if self.size != recorded_size {
            return Err(VerifyProblem::SizeMismatch {
                recorded: recorded_size,
                received: self.size,
            });
        }
        if self.held.len() < TRAILER_LEN {
            return Err(VerifyProblem::TooShort { size: self.size });
        }
        let trailer = hex::encode(&self.held);
        let content = hex::encode(self.content.finalize());
        if trailer != content {
            return Err(VerifyProblem::TrailerMismatch { trailer, content });
        }
        if !trailer.eq_ignore_ascii_case(recorded_sha256) {
            return Err(VerifyProblem::RecordMismatch {
                recorded: recorded_sha256.to_owned(),
                trailer,
            });
        }
        Ok(content)
    }
}

/// Whether a snapshot of about `expected` bytes can be written to `out`,
/// asked before one is taken: `out` does not exist, its directory takes a
/// new file (`FILE.part` is created and removed again), and its file
/// system has room for `expected` bytes.
///
/// # Errors
/// [`Error::Invalid`] naming `--out` and what is wrong.
pub fn check_destination(out: &Path, expected: u64) -> Result<(), Error> {
    let refuse = |why: String| Error::Invalid(format!("--out {}: {why}; no snapshot was taken", out.display()));
    if out.exists() {
        return Err(refuse(
            "the file exists, and steward never overwrites a snapshot file".into(),
        ));
    }
    let part = part_path(out);
    if part.exists() {
        return Err(Error::PartExists {
            path: out.to_owned(),
            part,
        });
    }
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(refuse(format!("the directory {} does not exist", dir.display())));
    }
    let probe = std::fs::OpenOptions::new().write(true).create_new(true).open(&part);
    match probe {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&part);
        }
        Err(error) => return Err(refuse(format!("cannot create a file in {}: {error}", dir.display()))),
    }
    if let Ok(stats) = nix::sys::statvfs::statvfs(&dir) {
        let free = stats.blocks_available().saturating_mul(stats.fragment_size());
        if free < expected {
            return Err(refuse(format!(
                "{} has {free} bytes free, and the snapshot needs about {expected}",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// `FILE.part`: where the download streams to before it is verified.
#[must_use]
pub fn part_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Downloads snapshot `id` to `out`, verified. Returns the agent's metadata
/// and the number of bytes written.
///
/// # Errors
/// The agent's refusal (unknown id, corrupt on its side), a snapshot that
/// does not verify, or a local file error. On error nothing is left at
/// `out`, and `FILE.part` is removed unless it holds a verified download
/// that could not be named.
pub async fn download(clients: &mut AgentClients, id: &str, out: &Path) -> Result<(pb::SnapshotInfo, u64), Error> {
    const RPC: &str = "DownloadSnapshot";
    let address = clients.address.clone();
    let plaintext = clients.plaintext;
    let mut stream = clients
        .snapshots
        .download_snapshot(pb::DownloadSnapshotRequest { id: id.to_owned() })
        .await
        .map_err(|s| Error::from_status(&address, plaintext, RPC, &s))?
        .into_inner();

    let part = part_path(out);
    // A snapshot holds every secret stored in etcd: private from the start.
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .await
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::PartExists {
                path: out.to_owned(),
                part,
            });
        }
        Err(source) => {
            return Err(Error::Io {
                action: "create",
                path: part,
                source,
            });
        }
    };

    let received = async {
        let io = |action| {
            let part = part.clone();
            move |source| Error::Io {
                action,
                path: part,
                source,
            }
        };
        let mut info: Option<pb::SnapshotInfo> = None;
        let mut hasher = TrailerHasher::default();
        while let Some(message) = stream
            .message()
            .await
            .map_err(|s| Error::from_status(&address, plaintext, RPC, &s))?
        {
            if info.is_none() {
                // The contract sends the metadata in the first message only.
                info = Some(message.info.ok_or_else(|| Error::MalformedReply {
                    address: address.clone(),
                    rpc: RPC,
                    problem: "the first message carries no snapshot info",
                })?);
            }
            hasher.update(&message.chunk);
            file.write_all(&message.chunk).await.map_err(io("write"))?;
        }
        let info = info.ok_or_else(|| Error::MalformedReply {
            address: address.clone(),
            rpc: RPC,
            problem: "the stream ended before any snapshot info",
        })?;
        hasher
            .verify(&info.sha256, info.size)
            .map_err(|problem| Error::SnapshotInvalid {
                address: address.clone(),
                id: id.to_owned(),
                problem,
            })?;
        file.flush().await.map_err(io("write"))?;
        file.sync_all().await.map_err(io("fsync"))?;
        Ok(info)
    }
    .await;
    drop(file);
    let info = match received {
        Ok(info) => info,
        Err(error) => {
            remove_part(&part).await;
            return Err(error);
        }
    };
    let size = info.size;
    put_in_place(&part, out).await?;
    Ok((info, size))
}

/// Gives the verified `part` its final name without replacing anything.
async fn put_in_place(part: &Path, out: &Path) -> Result<(), Error> {
    match tokio::fs::hard_link(part, out).await {
        Ok(()) => remove_part(part).await,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::OutputExists {
                path: out.to_owned(),
                part: part.to_owned(),
            });
        }
        Err(error) => {
            // Some filesystems (vfat, some FUSE) have no hard links: fall
            // back to check-then-rename, which only races with a file
            // created in the same instant.
            tracing::debug!(%error, "hard link failed; renaming instead");
            if tokio::fs::symlink_metadata(out).await.is_ok() {
                return Err(Error::OutputExists {
                    path: out.to_owned(),
                    part: part.to_owned(),
                });
            }
            tokio::fs::rename(part, out).await.map_err(|source| Error::Io {
                action: "rename to",
                path: out.to_owned(),
                source,
            })?;
        }
    }
    sync_parent(out).await
}

/// Makes the new name durable: a crash after this keeps the file.
async fn sync_parent(out: &Path) -> Result<(), Error> {
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let io = |action| {
        let parent = parent.clone();
        move |source| Error::Io {
            action,
            path: parent,
            source,
        }
    };
    let dir = tokio::fs::File::open(&parent).await.map_err(io("open directory"))?;
    dir.sync_all().await.map_err(io("fsync directory"))
}

async fn remove_part(part: &Path) {
    if let Err(error) = tokio::fs::remove_file(part).await {
        tracing::warn!(part = %part.display(), %error, "cannot remove the partial download");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake snapshot: content followed by its sha256.
    fn snapshot(content: &[u8]) -> Vec<u8> {
        let mut bytes = content.to_vec();
        bytes.extend_from_slice(&Sha256::digest(content));
        bytes
    }

    fn hash_in_chunks(bytes: &[u8], chunk: usize) -> TrailerHasher {
        let mut hasher = TrailerHasher::default();
        for piece in bytes.chunks(chunk) {
            hasher.update(piece);
        }
        hasher
    }

    #[test]
    fn a_good_snapshot_verifies_whatever_the_chunking() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = snapshot(&content);
        let expected = hex::encode(Sha256::digest(&content));
        for chunk in [1, 7, 31, 32, 33, 4096, bytes.len()] {
            let sha = hash_in_chunks(&bytes, chunk)
                .verify(&expected, bytes.len() as u64)
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(sha, expected);
        }
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let mut bytes = snapshot(b"some bolt db pages");
        bytes[3] ^= 1;
        let recorded = hex::encode(&bytes[bytes.len() - TRAILER_LEN..]);
        let problem = hash_in_chunks(&bytes, 5)
            .verify(&recorded, bytes.len() as u64)
            .unwrap_err();
        assert!(matches!(problem, VerifyProblem::TrailerMismatch { .. }), "{problem}");
    }

    #[test]
    fn the_agents_record_must_match() {
        let bytes = snapshot(b"content");
        let len = bytes.len() as u64;
        let problem = hash_in_chunks(&bytes, 3).verify(&"00".repeat(32), len).unwrap_err();
        assert!(matches!(problem, VerifyProblem::RecordMismatch { .. }), "{problem}");
        let problem = hash_in_chunks(&bytes, 3).verify(&"00".repeat(32), len + 1).unwrap_err();
        assert!(matches!(problem, VerifyProblem::SizeMismatch { .. }), "{problem}");
        let problem = hash_in_chunks(b"short", 3).verify("", 5).unwrap_err();
        assert_eq!(problem, VerifyProblem::TooShort { size: 5 });
    }

    #[test]
    fn the_part_file_sits_next_to_the_target() {
        assert_eq!(
            part_path(Path::new("/backups/snap.db")),
            PathBuf::from("/backups/snap.db.part")
        );
    }

    #[tokio::test]
    async fn putting_in_place_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.db");
        let part = part_path(&out);
        std::fs::write(&part, b"new").unwrap();
        std::fs::write(&out, b"old").unwrap();
        let error = put_in_place(&part, &out).await.unwrap_err();
        assert!(matches!(error, Error::OutputExists { .. }), "{error}");
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert!(part.exists(), "the verified download is kept");

        std::fs::remove_file(&out).unwrap();
        put_in_place(&part, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!part.exists());
    }
}
