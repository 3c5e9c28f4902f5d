//! etcd's snapshot trailer: a snapshot file ends with the sha256 of
//! everything before it, 32 bytes. Both sides check it as the bytes go by,
//! in constant memory and without reading a file twice, on a thread that
//! also writes them.

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// The length of the trailer: one sha256.
pub const TRAILER_LEN: usize = 32;

/// How many batches may wait for the writing thread: at most 4 MiB held
/// while it catches up.
const QUEUE: usize = 4;
/// Bytes gathered before they go to the writing thread, one write each.
/// etcd sends 32 KiB at a time: handing each chunk over on its own would
/// wake the thread, and switch tasks, 32 times as often.
const WRITE_BUFFER: usize = 1 << 20;
/// Bytes written between two nudges of the early writeback.
const WRITEBACK_EVERY: usize = 64 << 20;

/// Hashes a snapshot as it streams by: everything except the last
/// [`TRAILER_LEN`] bytes goes into sha256, and the last bytes are held
/// back as the trailer. A chunk is hashed where it lies; only its last 32
/// bytes are copied.
#[derive(Clone, Debug, Default)]
pub struct TrailerHasher {
    content: Sha256,
    tail: [u8; TRAILER_LEN],
    tail_len: usize,
    size: u64,
}

impl TrailerHasher {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if let Some(cut) = chunk.len().checked_sub(TRAILER_LEN) {
            // The held bytes are content after all: a whole trailer follows.
            self.content.update(&self.tail[..self.tail_len]);
            self.content.update(&chunk[..cut]);
            self.tail.copy_from_slice(&chunk[cut..]);
            self.tail_len = TRAILER_LEN;
        } else {
            let mut joined = [0_u8; 2 * TRAILER_LEN];
            let len = self.tail_len + chunk.len();
            joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joined[self.tail_len..len].copy_from_slice(chunk);
            let keep = len.min(TRAILER_LEN);
            self.content.update(&joined[..len - keep]);
            self.tail[..keep].copy_from_slice(&joined[len - keep..len]);
            self.tail_len = keep;
        }
    }

    /// What was fed: its size, the content's sha256 and the trailer.
    #[must_use]
    pub fn finish(self) -> Hashed {
        Hashed {
            size: self.size,
            content_sha256: hex::encode(self.content.finalize()),
            trailer: (self.tail_len == TRAILER_LEN).then(|| hex::encode(self.tail)),
        }
    }
}

/// What a writing thread computes over the bytes it writes: fed every
/// chunk in order, then asked for its summary once.
pub trait Summing: Send + 'static {
    /// What it makes of the bytes.
    type Summary: Send + 'static;
    /// Feeds the next bytes.
    fn update(&mut self, bytes: &[u8]);
    /// The summary of everything fed.
    fn finish(self) -> Self::Summary;
}

impl Summing for TrailerHasher {
    type Summary = Hashed;

    fn update(&mut self, bytes: &[u8]) {
        Self::update(self, bytes);
    }

    fn finish(self) -> Hashed {
        Self::finish(self)
    }
}

/// Two summaries of the same bytes in one pass (etcd's trailer check and
/// the bbolt leaf counts of a snapshot, say).
impl<A: Summing, B: Summing> Summing for (A, B) {
    type Summary = (A::Summary, B::Summary);

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
        self.1.update(bytes);
    }

    fn finish(self) -> Self::Summary {
        (self.0.finish(), self.1.finish())
    }
}

/// Hashes everything `reader` yields (a snapshot file), as
/// [`TrailerHasher`] does a stream.
///
/// # Errors
/// A read error.
pub fn hash_reader(reader: &mut impl std::io::Read) -> std::io::Result<Hashed> {
    let mut hasher = TrailerHasher::default();
    let mut buffer = vec![0_u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..read]);
    }
}

/// A whole stream, hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashed {
    /// Bytes fed, trailer included.
    pub size: u64,
    /// sha256 of everything but the last [`TRAILER_LEN`] bytes, hex.
    pub content_sha256: String,
    /// The last [`TRAILER_LEN`] bytes, hex; `None` when fewer were fed.
    pub trailer: Option<String>,
}

impl Hashed {
    /// True when the trailer is the content's sha256.
    #[must_use]
    pub fn trailer_matches(&self) -> bool {
        self.trailer.as_deref() == Some(self.content_sha256.as_str())
    }
}

/// A thread that writes a snapshot's chunks to a file (when it has one)
/// and hashes them (etcd's trailer check unless another [`Summing`] is
/// given), so that writing and hashing overlap with receiving instead of
/// adding to it: the stream's task hands each chunk over and goes on,
/// waiting only when the thread is [`QUEUE`] batches behind.
#[derive(Debug)]
pub struct HashingWriter<S: Summing = TrailerHasher> {
    feed: mpsc::Sender<bytes::Bytes>,
    gathered: Batches,
    done: oneshot::Receiver<Result<Written<S::Summary>, std::io::Error>>,
}

/// What a [`HashingWriter`] did.
#[derive(Debug)]
pub struct Written<T = Hashed> {
    /// Everything handed over, hashed (summed).
    pub hashed: T,
    /// The file, every chunk written to it (not yet synced).
    pub file: Option<std::fs::File>,
}

/// Why a [`HashingWriter`] did not finish.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Writing the file failed (the thread stopped there).
    #[error("cannot write the file")]
    Io(#[source] std::io::Error),
    /// The thread is gone (it panicked).
    #[error("the snapshot's writing thread stopped")]
    Stopped,
}

impl HashingWriter {
    /// Starts the thread, writing to `file` when there is one. The written
    /// pages stay in the page cache, for a check that reads the file next.
    ///
    /// # Errors
    /// The system refused a new thread.
    pub fn start(file: Option<std::fs::File>) -> std::io::Result<Self> {
        Self::spawn(file, AfterWriteback::KeepCached, TrailerHasher::default())
    }

    /// Starts the thread writing to a file that nothing reads soon (a
    /// download, or a snapshot the agent keeps). Pages leave the page
    /// cache as soon as they are on disk: a snapshot of several GiB does
    /// not push out what the host's etcd keeps cached, and the next pages
    /// reuse the freed ones.
    ///
    /// # Errors
    /// The system refused a new thread.
    pub fn start_uncached(file: std::fs::File) -> std::io::Result<Self> {
        Self::start_uncached_with(file, TrailerHasher::default())
    }

    /// Starts the thread writing to a pipe or another stream that cannot
    /// be synced (standard output piped to another program).
    ///
    /// # Errors
    /// The system refused a new thread.
    pub fn start_stream(stream: std::fs::File) -> std::io::Result<Self> {
        Self::start_stream_with(stream, TrailerHasher::default())
    }
}

impl<S: Summing> HashingWriter<S> {
    /// [`HashingWriter::start_uncached`] with `summing` over the bytes.
    ///
    /// # Errors
    /// The system refused a new thread.
    pub fn start_uncached_with(file: std::fs::File, summing: S) -> std::io::Result<Self> {
        Self::spawn(Some(file), AfterWriteback::DropFromCache, summing)
    }

    /// [`HashingWriter::start_stream`] with `summing` over the bytes.
    ///
    /// # Errors
    /// The system refused a new thread.
    pub fn start_stream_with(stream: std::fs::File, summing: S) -> std::io::Result<Self> {
        Self::spawn(Some(stream), AfterWriteback::NotAFile, summing)
    }

    fn spawn(file: Option<std::fs::File>, after: AfterWriteback, mut hasher: S) -> std::io::Result<Self> {
        use std::io::Write;
        let (feed, mut chunks) = mpsc::channel::<bytes::Bytes>(QUEUE);
        let (report, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot-write".into())
            .spawn(move || {
                let early = file
                    .as_ref()
                    .filter(|_| after != AfterWriteback::NotAFile)
                    .and_then(|f| EarlyWriteback::start(f, after).ok());
                let mut file = file;
                let mut unsynced = 0;
                while let Some(chunk) = chunks.blocking_recv() {
                    if let Some(file) = file.as_mut()
                        && let Err(error) = file.write_all(&chunk)
                    {
                        let _ = report.send(Err(error));
                        return;
                    }
                    hasher.update(&chunk);
                    unsynced += chunk.len();
                    if unsynced >= WRITEBACK_EVERY
                        && let Some(early) = &early
                    {
                        early.nudge();
                        unsynced = 0;
                    }
                }
                drop(early);
                let _ = report.send(Ok(Written {
                    hashed: hasher.finish(),
                    file,
                }));
            })?;
        Ok(Self {
            feed,
            gathered: Batches::default(),
            done,
        })
    }

    /// Hands the next bytes over. When this fails, [`Self::finish`] says
    /// why.
    ///
    /// # Errors
    /// The thread has stopped.
    pub async fn update(&mut self, chunk: bytes::Bytes) -> Result<(), WriterError> {
        match self.gathered.push(chunk) {
            Some(batch) => self.hand_over(batch).await,
            None => Ok(()),
        }
    }

    async fn hand_over(&self, batch: bytes::Bytes) -> Result<(), WriterError> {
        self.feed.send(batch).await.map_err(|_| WriterError::Stopped)
    }

    /// Waits for the thread to write and hash everything handed over.
    ///
    /// # Errors
    /// [`WriterError`].
    pub async fn finish(mut self) -> Result<Written<S::Summary>, WriterError> {
        if let Some(rest) = self.gathered.rest() {
            // A refusal means the thread stopped: its report follows.
            let _ = self.hand_over(rest).await;
        }
        drop(self.feed);
        match self.done.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(error)) => Err(WriterError::Io(error)),
            Err(_) => Err(WriterError::Stopped),
        }
    }
}

/// Gathers small chunks into batches of about [`WRITE_BUFFER`] bytes, so
/// that what follows (a write, a channel, a gRPC message) runs once per
/// MiB rather than once per 32 KiB chunk. A chunk of a batch's size or more
/// passes as it is.
#[derive(Debug, Default)]
pub struct Batches {
    /// Bytes not yet given out, less than [`WRITE_BUFFER`].
    gathered: bytes::BytesMut,
}

impl Batches {
    /// Takes the next chunk; returns a batch once there is one.
    pub fn push(&mut self, chunk: bytes::Bytes) -> Option<bytes::Bytes> {
        if self.gathered.is_empty() && chunk.len() >= WRITE_BUFFER {
            return Some(chunk);
        }
        if self.gathered.capacity() == 0 {
            self.gathered.reserve(WRITE_BUFFER);
        }
        self.gathered.extend_from_slice(&chunk);
        (self.gathered.len() >= WRITE_BUFFER).then(|| self.gathered.split().freeze())
    }

    /// What is left at the end of the stream, if anything.
    pub fn rest(&mut self) -> Option<bytes::Bytes> {
        (!self.gathered.is_empty()).then(|| self.gathered.split().freeze())
    }
}

/// Asks the kernel to drop `file`'s pages from the page cache. Only pages
/// already written back go (sync first); the advice is best effort.
pub fn leave_page_cache(file: &std::fs::File) {
    let _ = nix::fcntl::posix_fadvise(file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// A thread that syncs a file being written every time it is nudged, so
/// that the disk writes the file while it streams in and the final sync
/// has little left to do. Nudges that come while it syncs are merged; a
/// failed sync is left to the final one to report.
struct EarlyWriteback {
    nudges: std::sync::mpsc::SyncSender<()>,
}

/// What happens to a file's pages once they are written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterWriteback {
    KeepCached,
    DropFromCache,
    /// A pipe: nothing to write back.
    NotAFile,
}

impl EarlyWriteback {
    fn start(file: &std::fs::File, after: AfterWriteback) -> std::io::Result<Self> {
        let file = file.try_clone()?;
        let (nudges, wakes) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("snapshot-sync".into())
            .spawn(move || {
                while wakes.recv().is_ok() {
                    if file.sync_data().is_ok() && after == AfterWriteback::DropFromCache {
                        leave_page_cache(&file);
                    }
                }
            })?;
        Ok(Self { nudges })
    }

    fn nudge(&self) {
        let _ = self.nudges.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_of(content: &[u8]) -> Vec<u8> {
        let mut file = content.to_vec();
        file.extend_from_slice(&Sha256::digest(content));
        file
    }

    fn hashed_in_chunks(bytes: &[u8], chunk: usize) -> Hashed {
        let mut hasher = TrailerHasher::default();
        for part in bytes.chunks(chunk) {
            hasher.update(part);
        }
        hasher.finish()
    }

    #[test]
    fn any_chunking_gives_the_same_verdict() {
        let content: Vec<u8> = (0..10_000_u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = snapshot_of(&content);
        let whole = hashed_in_chunks(&file, file.len());
        assert!(whole.trailer_matches());
        assert_eq!(whole.content_sha256, hex::encode(Sha256::digest(&content)));
        assert_eq!(whole.size, file.len() as u64);
        for chunk in [1, 5, 31, 32, 33, 63, 64, 4096, 9_999] {
            assert_eq!(hashed_in_chunks(&file, chunk), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_flipped_byte_or_a_short_file_fails() {
        let mut file = snapshot_of(b"some database pages");
        file[3] ^= 1;
        assert!(!hashed_in_chunks(&file, 7).trailer_matches());
        let short = hashed_in_chunks(&[1, 2, 3], 2);
        assert_eq!(short.trailer, None);
        assert!(!short.trailer_matches());
    }

    #[tokio::test]
    async fn the_thread_writes_what_it_hashes() {
        // Long enough for the early writeback to sync it twice meanwhile.
        let content: Vec<u8> = (0..2 * WRITEBACK_EVERY + 100_000).map(|i| (i % 253) as u8).collect();
        let snapshot = snapshot_of(&content);
        let dir = std::env::temp_dir().join(format!("steward-trailer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a dir");
        let path = dir.join("s.db");
        let file = std::fs::File::create(&path).expect("a file");
        let mut thread = HashingWriter::start(Some(file)).expect("a thread");
        for part in snapshot.chunks(30_000) {
            thread.update(bytes::Bytes::copy_from_slice(part)).await.expect("fed");
        }
        let written = thread.finish().await.expect("written");
        assert_eq!(written.hashed, hashed_in_chunks(&snapshot, 30_000));
        assert!(written.hashed.trailer_matches());
        drop(written.file);
        assert_eq!(std::fs::read(&path).expect("read back"), snapshot);
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }

    #[test]
    fn batches_keep_every_byte_in_order() {
        let mut batches = Batches::default();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let mut sent = Vec::new();
        for i in 0..100_u32 {
            let chunk: Vec<u8> = (0..(i * 977 % 70_000)).map(|j| (i + j) as u8).collect();
            sent.extend_from_slice(&chunk);
            if let Some(batch) = batches.push(bytes::Bytes::from(chunk)) {
                sizes.push(batch.len());
                out.extend_from_slice(&batch);
            }
        }
        let big = vec![7_u8; WRITE_BUFFER + 1];
        sent.extend_from_slice(&big);
        for batch in batches.push(bytes::Bytes::from(big)).into_iter().chain(batches.rest()) {
            sizes.push(batch.len());
            out.extend_from_slice(&batch);
        }
        assert_eq!(out, sent);
        assert!(sizes[..sizes.len() - 1].iter().all(|&n| n >= WRITE_BUFFER), "{sizes:?}");
        assert!(batches.rest().is_none());
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_by_finish() {
        // A file opened read-only refuses every write.
        let path = std::env::current_exe().expect("this test's executable");
        let file = std::fs::File::open(path).expect("opened");
        let mut thread = HashingWriter::start(Some(file)).expect("a thread");
        let mut refused = false;
        // Chunks of etcd's size, more than the write buffer holds.
        let chunk = bytes::Bytes::from(vec![0_u8; 32 << 10]);
        for _ in 0..((QUEUE + 2) * WRITE_BUFFER / chunk.len()) {
            if thread.update(chunk.clone()).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the thread stops taking chunks after a failed write");
        assert!(matches!(thread.finish().await, Err(WriterError::Io(_))));
    }
}
