//! Downloading a snapshot from an agent to a local file without ever
//! leaving a half-written or unverified file under the final name: the bytes
//! go to `FILE.part`, the sha256 trailer is checked as they stream (or, for
//! a snapshot the agent sends as it takes it, the CRC-32 of what it sent:
//! see [`super::copy_check`]), the file is fsynced, and only then does it
//! get its name (a hard link, which unlike rename refuses to replace a file
//! that appeared meanwhile). A snapshot can also go to an open stream
//! (standard output piped to another program), written as it arrives and
//! checked the same way at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use steward_proto::v1 as pb;

use crate::engine::connect::agent::{AgentAddress, AgentClients};
use crate::engine::error::Error;
use crate::engine::transfer::progress::Meter;

use steward_proto::trailer::Summing;
pub use steward_proto::trailer::{Hashed, HashingWriter, TRAILER_LEN, TrailerHasher, WriterError};

use super::copy_check::{CopyCheck, CopyVerdict, verify_copy};
use super::on_worker::on_worker;

pub use crate::engine::error::VerifyProblem;

/// Checks the trailer against the content only (a file with no record to
/// compare with). Returns the content's sha256, hex, and the size.
///
/// # Errors
/// The file is too short or its trailer does not match.
pub fn verify_trailer(hashed: Hashed) -> Result<(String, u64), VerifyProblem> {
    let size = hashed.size;
    let Some(trailer) = hashed.trailer else {
        return Err(VerifyProblem::TooShort { size });
    };
    if trailer != hashed.content_sha256 {
        return Err(VerifyProblem::TrailerMismatch {
            trailer,
            content: hashed.content_sha256,
        });
    }
    Ok((hashed.content_sha256, size))
}

/// Checks the trailer against the content, and both against the agent's
/// record (`sha256` hex and `size`). Returns the content's sha256, hex.
///
/// # Errors
/// The first [`VerifyProblem`] found.
pub fn verify(hashed: Hashed, recorded_sha256: &str, recorded_size: u64) -> Result<String, VerifyProblem> {
    if hashed.size != recorded_size {
        return Err(VerifyProblem::SizeMismatch {
            recorded: recorded_size,
            received: hashed.size,
        });
    }
    let (content, _) = verify_trailer(hashed)?;
    if !content.eq_ignore_ascii_case(recorded_sha256) {
        return Err(VerifyProblem::RecordMismatch {
            recorded: recorded_sha256.to_owned(),
            trailer: content,
        });
    }
    Ok(content)
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

/// Where a downloaded snapshot goes.
#[derive(Clone, Debug)]
pub enum CopyTo {
    /// A new local file: written as `FILE.part`, verified, synced, and only
    /// then given its name.
    File(PathBuf),
    /// An open stream, such as standard output piped to another program:
    /// written as the snapshot arrives and checked at its end. What was
    /// written cannot be taken back, so a failed check is an error the
    /// reader must act on (discard what it got).
    Stream {
        /// The stream.
        stream: Arc<std::fs::File>,
        /// What it is, for messages ("standard output").
        name: String,
    },
}

impl CopyTo {
    /// The file, or the stream's name.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Stream { name, .. } => name.clone(),
        }
    }

    /// The file, when the copy goes to one.
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Stream { .. } => None,
        }
    }
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
    Box::pin(download_to(clients, id, &CopyTo::File(out.to_owned()))).await
}

/// Downloads snapshot `id` to `to`, verified, as [`download`] does a file.
///
/// # Errors
/// As [`download`]; a stream keeps what was written to it.
pub async fn download_to(clients: &mut AgentClients, id: &str, to: &CopyTo) -> Result<(pb::SnapshotInfo, u64), Error> {
    const RPC: &str = "DownloadSnapshot";
    let address = clients.address.clone();
    let plaintext = clients.plaintext;
    let mut stream = clients
        .snapshots
        .download_snapshot(pb::DownloadSnapshotRequest { id: id.to_owned() })
        .await
        .map_err(|s| Error::from_status(&address, plaintext, RPC, &s))?
        .into_inner();
    let mut receiving = Receiving::create(to).await?;
    let meter = Meter::start(&format!("downloading snapshot {id} from {address}"), None);
    let at = address.clone();
    let receive = async move {
        let address = at;
        let received = async {
            let mut info: Option<pb::SnapshotInfo> = None;
            while let Some(message) = stream
                .message()
                .await
                .map_err(|s| Error::from_status(&address, plaintext, RPC, &s))?
            {
                if info.is_none() {
                    // The contract sends the metadata in the first message only.
                    let first = message.info.ok_or_else(|| Error::MalformedReply {
                        address: address.clone(),
                        rpc: RPC,
                        problem: "the first message carries no snapshot info",
                    })?;
                    meter.set_total(first.size);
                    info = Some(first);
                }
                meter.advance(message.chunk.len() as u64);
                receiving.write(message.chunk).await?;
            }
            info.ok_or_else(|| Error::MalformedReply {
                address: address.clone(),
                rpc: RPC,
                problem: "the stream ended before any snapshot info",
            })
        }
        .await;
        (received, receiving)
    };
    let (received, receiving) = on_worker(receive).await;
    let info = match received {
        Ok(info) => info,
        Err(error) => {
            receiving.abandon().await;
            return Err(error);
        }
    };
    receiving.finish(&address, &info).await?;
    let size = info.size;
    Ok((info, size))
}

/// Why a snapshot taken and sent in one pass did not end up in the file.
#[derive(Debug)]
pub enum TakeAndDownloadError {
    /// The agent does not have the call (an older agent): take, then
    /// download.
    Unsupported,
    /// No snapshot was taken (or the agent's own check failed and it kept
    /// nothing).
    NotTaken(Error),
    /// The snapshot was taken and stored on the agent, but the local copy
    /// failed.
    NotCopied {
        /// The snapshot as the agent stored it.
        snapshot: Box<pb::SnapshotInfo>,
        /// Why the copy failed.
        source: Error,
    },
}

/// Takes a snapshot through the agent and writes it to `out` in the same
/// pass (TakeAndSendSnapshot), checked against what the agent stored: one
/// stream from etcd to both places instead of a take and then a download.
///
/// # Errors
/// [`TakeAndDownloadError`]; nothing is left at `out` on error.
pub async fn take_and_download(
    clients: &mut AgentClients,
    fencing_token: i64,
    out: &CopyTo,
) -> Result<pb::SnapshotInfo, TakeAndDownloadError> {
    const RPC: &str = "TakeAndSendSnapshot";
    use pb::take_and_send_snapshot_response::Part;
    let address = clients.address.clone();
    let plaintext = clients.plaintext;
    let failed = |s: &tonic::Status| Error::from_status(&address, plaintext, RPC, s);
    let check = match out {
        CopyTo::File(_) => CopyCheck::crc_only(),
        CopyTo::Stream { .. } => CopyCheck::with_trailer(),
    };
    let receiving = Receiving::create_with(out, check)
        .await
        .map_err(TakeAndDownloadError::NotTaken)?;
    let stream = clients
        .snapshots
        .take_and_send_snapshot(pb::TakeSnapshotRequest { fencing_token })
        .await;
    let mut stream = match stream {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            receiving.abandon().await;
            return Err(if status.code() == tonic::Code::Unimplemented {
                TakeAndDownloadError::Unsupported
            } else {
                TakeAndDownloadError::NotTaken(failed(&status))
            });
        }
    };
    // A local write that fails does not stop the stream: the agent stores
    // the snapshot all the same, and its id is in the last message.
    let meter = Meter::start(&format!("snapshot through {address}"), None);
    let at = address.clone();
    let receive = async move {
        let address = at;
        let mut local: Result<(), Error> = Ok(());
        let mut copying = Copying::Open(receiving);
        let stored = loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    break Err(Error::MalformedReply {
                        address: address.clone(),
                        rpc: RPC,
                        problem: "the stream ended before the stored snapshot's info",
                    });
                }
                Err(status) => break Err(Error::from_status(&address, plaintext, RPC, &status)),
            };
            match (message.part, &mut copying) {
                (Some(Part::Chunk(chunk)), Copying::Open(receiving)) if local.is_ok() => {
                    meter.advance(chunk.len() as u64);
                    local = receiving.write(chunk).await;
                    // The agent follows its last chunk with an empty one
                    // that carries the CRC-32 of all of them: the copy is
                    // made durable while the agent still syncs and
                    // summarises its own.
                    if message.chunks_crc32.is_some() && local.is_ok() {
                        copying = Copying::Sealed(copying.seal().await);
                    }
                }
                (Some(Part::Chunk(_)), Copying::Sealed(_)) if local.is_ok() => {
                    local = Err(Error::MalformedReply {
                        address: address.clone(),
                        rpc: RPC,
                        problem: "a chunk after the one marked last",
                    });
                }
                (Some(Part::Chunk(_)), _) => {}
                (Some(Part::Stored(info)), _) => break Ok((info, message.chunks_crc32)),
                (None, _) => {
                    break Err(Error::MalformedReply {
                        address: address.clone(),
                        rpc: RPC,
                        problem: "a message with neither a chunk nor the stored snapshot",
                    });
                }
            }
        };
        (stored, local, copying)
    };
    let (stored, local, copying) = on_worker(receive).await;
    let (snapshot, sent_crc32) = match stored {
        Ok(stored) => stored,
        Err(error) => {
            copying.discard().await;
            return Err(TakeAndDownloadError::NotTaken(error));
        }
    };
    let copied = match local {
        Ok(()) => match copying.seal().await {
            Ok(sealed) => sealed.finish_copy(&address, &snapshot, sent_crc32).await,
            Err(error) => Err(error),
        },
        Err(error) => {
            copying.discard().await;
            Err(error)
        }
    };
    match copied {
        Ok(()) => Ok(snapshot),
        Err(source) => Err(TakeAndDownloadError::NotCopied {
            snapshot: Box::new(snapshot),
            source,
        }),
    }
}

/// A download in progress: `FILE.part` (or a stream), written and hashed by
/// a thread of its own as the chunks arrive, so that receiving goes on
/// meanwhile.
struct Receiving<S: Summing = TrailerHasher> {
    target: Target,
    writer: HashingWriter<S>,
}

/// What a [`Receiving`] writes to.
enum Target {
    File { out: PathBuf, part: PathBuf },
    Stream { name: PathBuf },
}

impl Target {
    /// What errors name: the part file, or the stream.
    fn written(&self) -> &Path {
        match self {
            Self::File { part, .. } => part,
            Self::Stream { name } => name,
        }
    }
}

impl Receiving {
    async fn create(to: &CopyTo) -> Result<Self, Error> {
        Self::create_with(to, TrailerHasher::default()).await
    }

    /// Checks what arrived against the agent's record of `info`, makes it
    /// durable and gives it its name. On error the part file is removed,
    /// unless it holds a verified download that could not be named.
    async fn finish(self, address: &AgentAddress, info: &pb::SnapshotInfo) -> Result<(), Error> {
        self.seal()
            .await?
            .judge(|hashed, _| async move { matches_record(hashed, address, info) })
            .await
    }
}

/// Checks `hashed` against the agent's record of `info` (see [`verify`]).
fn matches_record(hashed: Hashed, address: &AgentAddress, info: &pb::SnapshotInfo) -> Result<(), Error> {
    verify(hashed, &info.sha256, info.size)
        .map(|_| ())
        .map_err(|problem| invalid(address, info, problem))
}

/// A copy that is not the snapshot the agent recorded.
fn invalid(address: &AgentAddress, info: &pb::SnapshotInfo, problem: VerifyProblem) -> Error {
    Error::SnapshotInvalid {
        address: address.clone(),
        id: info.id.clone(),
        problem,
    }
}

/// Reads `file` from where it stands to its end, hashed as a snapshot
/// ([`Hashed`]), off the runtime's threads.
///
/// # Errors
/// A read error.
pub async fn hash_file(mut file: std::fs::File) -> std::io::Result<Hashed> {
    tokio::task::spawn_blocking(move || steward_proto::trailer::hash_reader(&mut file))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)))
}

impl<S: Summing> Receiving<S> {
    async fn create_with(to: &CopyTo, summing: S) -> Result<Self, Error> {
        match to {
            CopyTo::File(out) => Self::create_file(out, summing).await,
            CopyTo::Stream { stream, name } => {
                let name = PathBuf::from(name);
                let io = |action| io_error(&name, action);
                let stream = stream.try_clone().map_err(io("duplicate the descriptor of"))?;
                let writer =
                    HashingWriter::start_stream_with(stream, summing).map_err(io("start the writing thread for"))?;
                Ok(Self {
                    target: Target::Stream { name },
                    writer,
                })
            }
        }
    }

    /// Creates `FILE.part` (private: a snapshot holds every secret stored
    /// in etcd), refusing one that exists.
    async fn create_file(out: &Path, summing: S) -> Result<Self, Error> {
        let part = part_path(out);
        let file = match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&part)
            .await
        {
            Ok(file) => file.into_std().await,
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
        match HashingWriter::start_uncached_with(file, summing) {
            Ok(writer) => Ok(Self {
                target: Target::File {
                    out: out.to_owned(),
                    part,
                },
                writer,
            }),
            Err(source) => {
                remove_part(&part).await;
                Err(Error::Io {
                    action: "start the writing thread for",
                    path: part,
                    source,
                })
            }
        }
    }

    /// Hands a chunk to the writing thread. An error means the thread
    /// stopped; [`Self::finish`] or [`Self::abandon`] follows.
    async fn write(&mut self, chunk: bytes::Bytes) -> Result<(), Error> {
        self.writer
            .update(chunk)
            .await
            .map_err(|e| writer_error(self.target.written(), e))
    }

    /// Waits for the writing thread to write and sum every byte, and makes
    /// a file durable: all that can be done before the verdict. On error the
    /// part file is removed.
    async fn seal(self) -> Result<Sealed<S>, Error> {
        let Self { target, writer } = self;
        let sealed = async {
            let written = writer.finish().await.map_err(|e| writer_error(target.written(), e))?;
            if let (Target::File { part, .. }, Some(file)) = (&target, written.file) {
                tokio::task::spawn_blocking(move || file.sync_all())
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(io_error(part, "fsync"))?;
            }
            Ok(written.hashed)
        }
        .await;
        match sealed {
            Ok(summary) => Ok(Sealed { target, summary }),
            Err(error) => {
                if let Target::File { part, .. } = &target {
                    remove_part(part).await;
                }
                Err(error)
            }
        }
    }

    /// Gives up: the part file is removed.
    async fn abandon(self) {
        let Self { target, writer } = self;
        // The thread closes the file once it has written what it holds.
        let _ = writer.finish().await;
        if let Target::File { part, .. } = target {
            remove_part(&part).await;
        }
    }
}

/// A copy written in full and durable, its summary waiting for the
/// verdict.
struct Sealed<S: Summing> {
    target: Target,
    summary: S::Summary,
}

impl<S: Summing> Sealed<S> {
    /// Has `check` judge the summary (given the part file, which a file's
    /// check may read again) and gives a file its name. On error the part
    /// file is removed, unless it holds a verified download that could not
    /// be named.
    async fn judge<C, F>(self, check: C) -> Result<(), Error>
    where
        C: FnOnce(S::Summary, Option<PathBuf>) -> F,
        F: Future<Output = Result<(), Error>>,
    {
        let Self { target, summary } = self;
        let (out, part) = match target {
            Target::File { out, part } => (out, part),
            // Written already; only the verdict is left.
            Target::Stream { .. } => return check(summary, None).await,
        };
        if let Err(error) = check(summary, Some(part.clone())).await {
            remove_part(&part).await;
            return Err(error);
        }
        put_in_place(&part, &out).await
    }

    /// Gives up: the part file is removed.
    async fn abandon(self) {
        if let Target::File { part, .. } = self.target {
            remove_part(&part).await;
        }
    }
}

impl Sealed<CopyCheck> {
    /// [`Receiving::finish`] for a copy the agent sent as it took the
    /// snapshot, with the CRC-32 it sent (see [`super::copy_check`]).
    async fn finish_copy(
        self,
        address: &AgentAddress,
        info: &pb::SnapshotInfo,
        sent_crc32: Option<u32>,
    ) -> Result<(), Error> {
        self.judge(|copied, part| async move {
            let verdict = verify_copy(copied, &info.sha256, info.size, sent_crc32)
                .map_err(|problem| invalid(address, info, problem))?;
            if verdict == CopyVerdict::Good {
                return Ok(());
            }
            let Some(part) = part else {
                return Err(Error::MalformedReply {
                    address: address.clone(),
                    rpc: "TakeAndSendSnapshot",
                    problem: "no CRC-32 of the chunks sent, and a stream cannot be read again",
                });
            };
            let file = std::fs::File::open(&part).map_err(io_error(&part, "open"))?;
            let hashed = hash_file(file).await.map_err(io_error(&part, "read"))?;
            matches_record(hashed, address, info)
        })
        .await
    }
}

/// The copy of a snapshot the agent sends as it takes it: receiving, or
/// sealed once the agent marked the end of the chunks.
enum Copying {
    Open(Receiving<CopyCheck>),
    Sealed(Result<Sealed<CopyCheck>, Error>),
}

impl Copying {
    /// Every byte written and durable.
    async fn seal(self) -> Result<Sealed<CopyCheck>, Error> {
        match self {
            Self::Open(receiving) => receiving.seal().await,
            Self::Sealed(sealed) => sealed,
        }
    }

    /// Gives up: the part file is removed (a failed seal removed it).
    async fn discard(self) {
        match self {
            Self::Open(receiving) => receiving.abandon().await,
            Self::Sealed(Ok(sealed)) => sealed.abandon().await,
            Self::Sealed(Err(_)) => {}
        }
    }
}

/// What the writing thread's failure means for `part`.
fn writer_error(part: &Path, error: WriterError) -> Error {
    match error {
        WriterError::Io(source) => io_error(part, "write")(source),
        WriterError::Stopped => io_error(part, "write")(std::io::Error::other(error)),
    }
}

/// An I/O error on `path`, for `map_err`.
fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::Io { action, path, source }
}

/// Gives the verified `part` its final name without replacing anything.
///
/// # Errors
/// [`Error::OutputExists`] when `out` exists, or the I/O error.
pub async fn put_in_place(part: &Path, out: &Path) -> Result<(), Error> {
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
///
/// # Errors
/// The directory cannot be opened or synced.
pub async fn sync_parent(out: &Path) -> Result<(), Error> {
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
    use sha2::{Digest, Sha256};

    use super::*;

    /// A fake snapshot: content followed by its sha256.
    fn snapshot(content: &[u8]) -> Vec<u8> {
        let mut bytes = content.to_vec();
        bytes.extend_from_slice(&Sha256::digest(content));
        bytes
    }

    fn hash_in_chunks(bytes: &[u8], chunk: usize) -> Hashed {
        let mut hasher = TrailerHasher::default();
        for piece in bytes.chunks(chunk) {
            hasher.update(piece);
        }
        hasher.finish()
    }

    #[test]
    fn a_good_snapshot_verifies_whatever_the_chunking() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = snapshot(&content);
        let expected = hex::encode(Sha256::digest(&content));
        for chunk in [1, 7, 31, 32, 33, 4096, bytes.len()] {
            let sha = verify(hash_in_chunks(&bytes, chunk), &expected, bytes.len() as u64)
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(sha, expected);
        }
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let mut bytes = snapshot(b"some bolt db pages");
        bytes[3] ^= 1;
        let recorded = hex::encode(&bytes[bytes.len() - TRAILER_LEN..]);
        let problem = verify(hash_in_chunks(&bytes, 5), &recorded, bytes.len() as u64).unwrap_err();
        assert!(matches!(problem, VerifyProblem::TrailerMismatch { .. }), "{problem}");
    }

    #[test]
    fn the_agents_record_must_match() {
        let bytes = snapshot(b"content");
        let len = bytes.len() as u64;
        let problem = verify(hash_in_chunks(&bytes, 3), &"00".repeat(32), len).unwrap_err();
        assert!(matches!(problem, VerifyProblem::RecordMismatch { .. }), "{problem}");
        let problem = verify(hash_in_chunks(&bytes, 3), &"00".repeat(32), len + 1).unwrap_err();
        assert!(matches!(problem, VerifyProblem::SizeMismatch { .. }), "{problem}");
        let problem = verify(hash_in_chunks(b"short", 3), "", 5).unwrap_err();
        assert_eq!(problem, VerifyProblem::TooShort { size: 5 });
    }

    #[test]
    fn the_part_file_sits_next_to_the_target() {
        assert_eq!(
            part_path(Path::new("/backups/snap.db")),
            PathBuf::from("/backups/snap.db.part")
        );
    }

    /// Writes `bytes` as a copy sent by an agent whose record is `info`,
    /// then finishes it with the CRC the agent sent.
    async fn copy_to_file(out: &Path, bytes: &[u8], info: &pb::SnapshotInfo, sent: Option<u32>) -> Result<(), Error> {
        let address: AgentAddress = "127.0.0.1:7400".parse().unwrap();
        let mut receiving = Receiving::create_with(&CopyTo::File(out.to_owned()), CopyCheck::crc_only())
            .await
            .unwrap();
        for piece in bytes.chunks(1000) {
            receiving.write(bytes::Bytes::copy_from_slice(piece)).await.unwrap();
        }
        receiving.seal().await?.finish_copy(&address, info, sent).await
    }

    #[tokio::test]
    async fn a_copy_is_named_once_it_matches_the_agents_crc_or_its_trailer_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = snapshot(&content);
        let info = pb::SnapshotInfo {
            id: "m0-1".into(),
            sha256: hex::encode(Sha256::digest(&content)),
            size: bytes.len() as u64,
            ..Default::default()
        };
        let crc = crc32fast::hash(&bytes);
        let mut flipped = bytes.clone();
        flipped[5000] ^= 4;

        let out = dir.path().join("good.db");
        copy_to_file(&out, &bytes, &info, Some(crc)).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);

        let out = dir.path().join("flipped.db");
        let error = copy_to_file(&out, &flipped, &info, Some(crc)).await.unwrap_err();
        assert!(error.to_string().contains("CRC-32"), "{error}");
        assert!(!out.exists() && !part_path(&out).exists(), "nothing is left");

        // An agent that sends no CRC: the file is read back and its trailer
        // checked against the record.
        let out = dir.path().join("read-back.db");
        copy_to_file(&out, &bytes, &info, None).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        let out = dir.path().join("read-back-flipped.db");
        let error = copy_to_file(&out, &flipped, &info, None).await.unwrap_err();
        assert!(error.to_string().contains("trailer"), "{error}");
        assert!(!out.exists() && !part_path(&out).exists(), "nothing is left");
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
