//! Sending a local file to an agent (a binary to stage, a snapshot to
//! restore): hash it here first (the contract wants the sha256 and size up
//! front, so the agent can refuse a mismatch), then stream a header
//! followed by chunks of a MiB.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
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
    let chunk = |bytes: Bytes| pb::UploadBinaryRequest {
        part: Some(Part::Chunk(bytes.into())),
    };
    let reader = tokio::spawn(send_file(path.to_owned(), size, vec![(first, sender)], chunk, None));
    let response = clients
        .binaries
        .upload_binary(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    read_error_first(path, reader).await?;
    response
        .map(tonic::Response::into_inner)
        .map_err(|s| Error::from_status(&clients.address, clients.plaintext, "UploadBinary", &s))
}

/// Uploads the snapshot file at `path` to every agent of `clients` at
/// once, each of which stores it under `header.id` once it verified it.
/// The file is read once: every chunk goes to each agent still listening,
/// so the slowest sets the pace, and the answers come back in the order of
/// `clients`.
///
/// # Errors
/// A local read error, for all of them (it explains any refusal it caused
/// better than the refusal); otherwise each agent's refusal is its own.
pub async fn upload_snapshot_to_all(
    clients: Vec<AgentClients>,
    path: &Path,
    header: &pb::SnapshotUploadHeader,
) -> Result<Vec<Result<pb::UploadSnapshotResponse, Error>>, Error> {
    use steward_proto::v1::upload_snapshot_request::Part as SnapshotPart;
    let addresses: Vec<String> = clients.iter().map(|c| c.address.to_string()).collect();
    tracing::info!(path = %path.display(), id = %header.id, agents = ?addresses, "uploading a snapshot");
    let meter = Meter::start(
        &format!("uploading snapshot {} to {}", header.id, addresses.join(", ")),
        Some(header.size),
    );
    let mut receivers = Vec::new();
    let mut calls = Vec::new();
    for mut clients in clients {
        let (sender, receiver) = mpsc::channel(BUFFERED_CHUNKS);
        let first = pb::UploadSnapshotRequest {
            part: Some(SnapshotPart::Header(header.clone())),
        };
        receivers.push((first, sender));
        calls.push(async move {
            clients
                .snapshots
                .upload_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| Error::from_status(&clients.address, clients.plaintext, "UploadSnapshot", &s))
        });
    }
    let chunk = |bytes: Bytes| pb::UploadSnapshotRequest {
        part: Some(SnapshotPart::Chunk(bytes)),
    };
    let reader = tokio::spawn(send_file(path.to_owned(), header.size, receivers, chunk, Some(meter)));
    let answers = futures::future::join_all(calls).await;
    read_error_first(path, reader).await?;
    Ok(answers)
}

/// Asks the agent to read the snapshot from `path` on its own host, which
/// must lie in one of its import dirs; checked there against `header` as
/// an upload is. `Ok(None)` when the agent cannot (the path is outside its
/// import dirs or missing there, or the agent predates the call): upload
/// instead.
///
/// # Errors
/// Any other refusal or failure, as for [`upload_snapshot_to_all`].
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

/// Sends each receiver its first message (the header), then exactly
/// `size` bytes of the file, each chunk wrapped by `chunk`; the file is
/// read once whatever the number of receivers. A receiver that stopped
/// listening (its agent refused; the RPC's status says why) is left out of
/// what follows, and the reading stops when none listens. `meter` counts
/// what was handed to the streams.
async fn send_file<M: Send + 'static>(
    path: PathBuf,
    size: u64,
    receivers: Vec<(M, mpsc::Sender<M>)>,
    chunk: impl Fn(Bytes) -> M + Send + 'static,
    meter: Option<Meter>,
) -> Result<(), Error> {
    let mut senders = Vec::new();
    for (first, sender) in receivers {
        if sender.send(first).await.is_ok() {
            senders.push(sender);
        }
    }
    if senders.is_empty() {
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
            senders = hand_to_each(senders, Bytes::from(bytes), &chunk);
            if senders.is_empty() {
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

/// Hands `bytes` to every sender, the last one taking the buffer itself
/// and the others a reference to it (a lone receiver, as a binary's, gets
/// a buffer it may take over without a copy); returns those still
/// listening.
fn hand_to_each<M>(senders: Vec<mpsc::Sender<M>>, bytes: Bytes, chunk: &impl Fn(Bytes) -> M) -> Vec<mpsc::Sender<M>> {
    let last = senders.len().saturating_sub(1);
    let mut bytes = Some(bytes);
    let mut listening = Vec::with_capacity(senders.len());
    for (i, sender) in senders.into_iter().enumerate() {
        let part = if i == last { bytes.take() } else { bytes.clone() };
        if let Some(part) = part
            && sender.blocking_send(chunk(part)).is_ok()
        {
            listening.push(sender);
        }
    }
    listening
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> pb::UploadBinaryRequest {
        pb::UploadBinaryRequest {
            part: Some(Part::Header(pb::UploadHeader::default())),
        }
    }

    fn chunk(bytes: Bytes) -> pb::UploadBinaryRequest {
        pb::UploadBinaryRequest {
            part: Some(Part::Chunk(bytes.into())),
        }
    }

    /// The parts a receiver got: the header's presence, then the content.
    async fn received(mut receiver: mpsc::Receiver<pb::UploadBinaryRequest>) -> (bool, Vec<usize>, Vec<u8>) {
        let mut header = false;
        let (mut sizes, mut content) = (Vec::new(), Vec::new());
        while let Some(message) = receiver.recv().await {
            match message.part.unwrap() {
                Part::Header(_) => {
                    assert!(!header && sizes.is_empty(), "the header comes once, first");
                    header = true;
                }
                Part::Chunk(chunk) => {
                    sizes.push(chunk.len());
                    content.extend_from_slice(&chunk);
                }
            }
        }
        (header, sizes, content)
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
    async fn every_receiver_gets_the_header_then_the_whole_file_in_whole_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        let content: Vec<u8> = (0..CHUNK_SIZE * 2 + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let (receivers, listeners): (Vec<_>, Vec<_>) = (0..3)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(16);
                ((header(), sender), tokio::spawn(received(receiver)))
            })
            .unzip();
        send_file(file, content.len() as u64, receivers, chunk, None)
            .await
            .unwrap();
        for listener in listeners {
            let (header, sizes, got) = listener.await.unwrap();
            assert!(header);
            assert_eq!(sizes, [CHUNK_SIZE, CHUNK_SIZE, 10]);
            assert!(got == content, "a receiver got other bytes than the file's");
        }
    }

    #[tokio::test]
    async fn a_receiver_that_stops_listening_leaves_the_others_their_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        let content: Vec<u8> = (0..CHUNK_SIZE * 3).map(|i| (i % 253) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        // This one takes the header and a chunk, then goes away while the
        // file is still being read.
        let (gone_sender, mut gone) = mpsc::channel(1);
        let leaving = tokio::spawn(async move {
            gone.recv().await.unwrap();
            gone.recv().await.unwrap();
        });
        let (sender, receiver) = mpsc::channel(1);
        let listener = tokio::spawn(received(receiver));
        send_file(
            file,
            content.len() as u64,
            vec![(header(), gone_sender), (header(), sender)],
            chunk,
            None,
        )
        .await
        .unwrap();
        leaving.await.unwrap();
        let (header, _, got) = listener.await.unwrap();
        assert!(header);
        assert!(got == content, "the listening receiver lost bytes");
    }

    #[test]
    fn a_lone_receiver_takes_the_buffer_without_a_copy() {
        let (sender, mut receiver) = mpsc::channel(1);
        let bytes = Bytes::from(vec![1_u8; 64]);
        let at = bytes.as_ptr();
        let listening = hand_to_each(vec![sender], bytes, &Vec::from);
        assert_eq!(listening.len(), 1);
        let got: Vec<u8> = receiver.try_recv().unwrap();
        assert_eq!(got.as_ptr(), at, "the chunk was copied");
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        std::fs::write(&file, b"abc").unwrap();
        let (sender, _receiver) = mpsc::channel(16);
        let error = send_file(file, 10, vec![(header(), sender)], chunk, None)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("cannot read"), "{error}");
    }
}
