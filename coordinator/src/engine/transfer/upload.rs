//! Sending a local file to an agent (a binary to stage, a snapshot to
//! restore): hash it here first (the contract wants the sha256 and size up
//! front, so the agent can refuse a mismatch), then stream a header
//! followed by chunks of a MiB.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;
use steward_proto::v1::upload_binary_request::Part;
use tokio::sync::mpsc;

use crate::engine::connect::agent::AgentClients;
use crate::engine::error::Error;
use crate::engine::transfer::progress::Meter;

/// Bytes per content message: a GiB snapshot goes out in a thousand
/// messages, each read with one system call, and the agent's writing
/// thread takes each as it comes instead of gathering small ones into a
/// copy (gRPC's limit per message is 4 MiB).
pub const CHUNK_SIZE: usize = 1 << 20;

/// Messages buffered between the file reader and the gRPC stream: enough to
/// keep the connection busy, little enough to bound memory.
const BUFFERED_CHUNKS: usize = 4;

/// A local file's size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bytes.
    pub size: u64,
    /// sha256, 64 lowercase hex digits.
    pub sha256: String,
}

/// Reads `path` once to compute its size and sha256.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub async fn fingerprint(path: &Path) -> Result<Fingerprint, Error> {
    let owned = path.to_owned();
    // Hashing tens of MB is CPU and blocking I/O: keep it off the runtime.
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<Fingerprint> {
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK_SIZE];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        Ok(Fingerprint {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    })
    .await
    .unwrap_or_else(|join| Err(std::io::Error::other(join)));
    result.map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Uploads `path` (whose `fingerprint` the caller computed, once for any
/// number of agents) as `tool` of `version` to the agent, which stages it
/// after checking the sha256, size and the version the binary reports.
///
/// # Errors
/// A local read error, or the agent's refusal.
pub async fn upload(
    clients: &mut AgentClients,
    path: &Path,
    fingerprint: &Fingerprint,
    version: &EtcdVersion,
    tool: pb::Tool,
    fencing_token: i64,
) -> Result<pb::ImportBinaryResponse, Error> {
    tracing::info!(path = %path.display(), size = fingerprint.size, sha256 = %fingerprint.sha256, "uploading");
    let header = pb::UploadHeader {
        tool: tool.into(),
        version: version.to_string(),
        sha256: fingerprint.sha256.clone(),
        size: fingerprint.size,
        fencing_token,
    };
    let (sender, receiver) = mpsc::channel(BUFFERED_CHUNKS);
    let size = header.size;
    let first = pb::UploadBinaryRequest {
        part: Some(Part::Header(header)),
    };
    let chunk = |bytes| pb::UploadBinaryRequest {
        part: Some(Part::Chunk(bytes)),
    };
    let reader = tokio::spawn(send_file(path.to_owned(), size, first, chunk, sender, None));
    let response = clients
        .binaries
        .upload_binary(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    read_error_first(path, reader).await?;
    response
        .map(tonic::Response::into_inner)
        .map_err(|s| Error::from_status(&clients.address, clients.plaintext, "UploadBinary", &s))
}

/// Uploads the snapshot file at `path` to the agent, which stores it under
/// `header.id` once it verified it.
///
/// # Errors
/// A local read error, or the agent's refusal.
pub async fn upload_snapshot(
    clients: &mut AgentClients,
    path: &Path,
    header: pb::SnapshotUploadHeader,
) -> Result<pb::UploadSnapshotResponse, Error> {
    use steward_proto::v1::upload_snapshot_request::Part as SnapshotPart;
    tracing::info!(path = %path.display(), id = %header.id, "uploading a snapshot");
    let meter = Meter::start(
        &format!("uploading snapshot {} to {}", header.id, clients.address),
        Some(header.size),
    );
    let (sender, receiver) = mpsc::channel(BUFFERED_CHUNKS);
    let size = header.size;
    let first = pb::UploadSnapshotRequest {
        part: Some(SnapshotPart::Header(header)),
    };
    let chunk = |bytes: Vec<u8>| pb::UploadSnapshotRequest {
        part: Some(SnapshotPart::Chunk(bytes.into())),
    };
    let reader = tokio::spawn(send_file(path.to_owned(), size, first, chunk, sender, Some(meter)));
    let response = clients
        .snapshots
        .upload_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    read_error_first(path, reader).await?;
    response
        .map(tonic::Response::into_inner)
        .map_err(|s| Error::from_status(&clients.address, clients.plaintext, "UploadSnapshot", &s))
}

/// Asks the agent to read the snapshot from `path` on its own host, which
/// must lie in one of its import dirs; checked there against `header` as
/// an upload is. `Ok(None)` when the agent cannot (the path is outside its
/// import dirs or missing there, or the agent predates the call): upload
/// instead.
///
/// # Errors
/// Any other refusal or failure, as for [`upload_snapshot`].
pub async fn import_snapshot(
    clients: &mut AgentClients,
    path: &Path,
    header: pb::SnapshotUploadHeader,
) -> Result<Option<pb::UploadSnapshotResponse>, Error> {
    let request = pb::ImportSnapshotRequest {
        header: Some(header),
        path: path.display().to_string(),
    };
    match clients.snapshots.import_snapshot(request).await {
        Ok(answer) => Ok(Some(answer.into_inner())),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::FailedPrecondition | tonic::Code::Unimplemented
            ) =>
        {
            tracing::debug!(agent = %clients.address, reason = status.message(), "the agent cannot import the snapshot; uploading");
            Ok(None)
        }
        Err(status) => Err(Error::from_status(
            &clients.address,
            clients.plaintext,
            "ImportSnapshot",
            &status,
        )),
    }
}

/// A read error explains a refusal ("size mismatch") better than the
/// refusal itself, so it wins.
async fn read_error_first(path: &Path, reader: tokio::task::JoinHandle<Result<(), Error>>) -> Result<(), Error> {
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(join) => {
            return Err(Error::Io {
                action: "read",
                path: path.to_owned(),
                source: std::io::Error::other(join),
            });
        }
    }
    Ok(())
}

/// Sends `first` (the header), then exactly `size` bytes of the file, each
/// chunk wrapped by `chunk`. Stops quietly when the agent has stopped
/// listening (it refused; the RPC's status says why). `meter` counts what
/// was handed to the stream.
async fn send_file<M: Send + 'static>(
    path: PathBuf,
    size: u64,
    first: M,
    chunk: impl Fn(Vec<u8>) -> M + Send + 'static,
    sender: mpsc::Sender<M>,
    meter: Option<Meter>,
) -> Result<(), Error> {
    if sender.send(first).await.is_err() {
        return Ok(());
    }
    // One thread reads the file from start to end: reads on the runtime
    // would each hop to the blocking pool and back.
    let reading = path.clone();
    tokio::task::spawn_blocking(move || {
        let io = |source| Error::Io {
            action: "read",
            path: reading.clone(),
            source,
        };
        let mut file = std::fs::File::open(&reading).map_err(io)?;
        let mut remaining = size;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
            let mut bytes = vec![0; want];
            file.read_exact(&mut bytes).map_err(|error| {
                if error.kind() == std::io::ErrorKind::UnexpectedEof {
                    io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank after it was hashed",
                    ))
                } else {
                    io(error)
                }
            })?;
            remaining -= want as u64;
            if sender.blocking_send(chunk(bytes)).is_err() {
                return Ok(());
            }
            if let Some(meter) = &meter {
                meter.advance(want as u64);
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|join| {
        Err(Error::Io {
            action: "read",
            path,
            source: std::io::Error::other(join),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> pb::UploadBinaryRequest {
        pb::UploadBinaryRequest {
            part: Some(Part::Header(pb::UploadHeader::default())),
        }
    }

    fn chunk(bytes: Vec<u8>) -> pb::UploadBinaryRequest {
        pb::UploadBinaryRequest {
            part: Some(Part::Chunk(bytes)),
        }
    }

    #[tokio::test]
    async fn fingerprints_match_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        std::fs::write(&file, b"abc").unwrap();
        let print = fingerprint(&file).await.unwrap();
        assert_eq!(print.size, 3);
        assert_eq!(
            print.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn the_file_goes_out_as_header_then_whole_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        let content: Vec<u8> = (0..CHUNK_SIZE * 2 + 10).map(|i| (i % 256) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let (sender, mut receiver) = mpsc::channel(16);
        send_file(file, content.len() as u64, header(), chunk, sender, None)
            .await
            .unwrap();
        let mut messages = Vec::new();
        while let Some(message) = receiver.recv().await {
            messages.push(message.part.unwrap());
        }
        assert!(matches!(messages[0], Part::Header(_)));
        let sizes: Vec<usize> = messages[1..]
            .iter()
            .map(|part| match part {
                Part::Chunk(chunk) => chunk.len(),
                Part::Header(_) => panic!("a second header"),
            })
            .collect();
        assert_eq!(sizes, [CHUNK_SIZE, CHUNK_SIZE, 10]);
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        std::fs::write(&file, b"abc").unwrap();
        let (sender, _receiver) = mpsc::channel(16);
        let error = send_file(file, 10, header(), chunk, sender, None).await.unwrap_err();
        assert!(error.to_string().starts_with("cannot read"), "{error}");
    }
}
