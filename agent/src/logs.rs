//! etcd's output: a size-capped log file and an in-memory tail.
//!
//! etcd writes straight into `etcd.log` (O_APPEND), so its output survives
//! the agent. A follower task reads what etcd appended, keeps the last lines
//! in memory (for TailLogs and for failure reports) and broadcasts new lines
//! to followers. When the file grows past its cap it is copied to
//! `etcd.log.1` and truncated in place; etcd keeps appending to the same
//! file. Lines written between the copy and the truncation can be lost; that
//! is the price of not owning etcd's file descriptor.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the follower looks for new output.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How much of an existing file is read to prime the tail at startup.
const PRIME_BYTES: u64 = 256 * 1024;

/// The in-memory tail and the broadcast of new lines.
#[derive(Debug, Clone)]
pub struct LogTail {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    capacity: usize,
    max_bytes: u64,
    lines: Mutex<Lines>,
    sender: broadcast::Sender<String>,
}

#[derive(Debug, Default)]
struct Lines {
    /// (sequence number, line); the sequence grows by one per line.
    ring: VecDeque<(u64, String)>,
    next_seq: u64,
    /// Bytes of the file already read.
    offset: u64,
    /// An incomplete last line, waiting for its newline.
    partial: Vec<u8>,
}

impl LogTail {
    /// A tail for `path` keeping `capacity` lines, rotating at `max_bytes`.
    #[must_use]
    pub fn new(path: PathBuf, capacity: usize, max_bytes: u64) -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                path,
                capacity,
                max_bytes,
                lines: Mutex::new(Lines::default()),
                sender,
            }),
        }
    }

    /// The log file etcd writes to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads the end of an existing log so the tail is not empty after an
    /// agent restart, then follows the file until `shutdown`.
    pub fn spawn_follower(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tail = self.clone();
        tail.prime();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(POLL_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        if let Err(error) = tail.poll() {
                            tracing::debug!(%error, path = %tail.inner.path.display(), "cannot read etcd log");
                        }
                    }
                }
            }
        })
    }

    fn prime(&self) {
        let Ok(mut file) = std::fs::File::open(&self.inner.path) else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        let start = len.saturating_sub(PRIME_BYTES);
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return;
        }
        // Skip the first, probably partial, line when starting mid-file.
        let body = if start > 0 {
            bytes
                .iter()
                .position(|b| *b == b'\n')
                .map_or(&[][..], |i| &bytes[i + 1..])
        } else {
            &bytes[..]
        };
        let mut lines = self.lock();
        lines.offset = start + u64::try_from(bytes.len()).unwrap_or(0);
        let text = String::from_utf8_lossy(body).into_owned();
        for line in text.lines() {
            self.push_line(&mut lines, line.to_owned(), false);
        }
    }

    /// Reads what was appended since the last poll; rotates when too big.
    pub fn poll(&self) -> std::io::Result<()> {
        let mut file = match std::fs::File::open(&self.inner.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // The lock is taken before the size is read: two polls at once (the
        // follower and a failure report) must not mistake each other's
        // progress for a truncation.
        let mut lines = self.lock();
        let len = file.metadata()?.len();
        if len < lines.offset {
            // Truncated (rotated): start again from the beginning.
            lines.offset = 0;
            lines.partial.clear();
        }
        if len > lines.offset {
            file.seek(SeekFrom::Start(lines.offset))?;
            let mut bytes = Vec::with_capacity(usize::try_from(len - lines.offset).unwrap_or(0));
            file.read_to_end(&mut bytes)?;
            lines.offset += u64::try_from(bytes.len()).unwrap_or(0);
            let mut pending = std::mem::take(&mut lines.partial);
            pending.extend_from_slice(&bytes);
            let complete = pending.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            lines.partial = pending.split_off(complete);
            for line in String::from_utf8_lossy(&pending).lines() {
                self.push_line(&mut lines, line.to_owned(), true);
            }
        }
        if lines.offset > self.inner.max_bytes {
            self.rotate(&mut lines)?;
        }
        Ok(())
    }

    fn rotate(&self, lines: &mut Lines) -> std::io::Result<()> {
        let rotated = self.inner.path.with_extension("log.1");
        if let Err(error) = std::fs::copy(&self.inner.path, &rotated) {
            // Most likely a full disk: a partial copy would keep it full and
            // the next poll would try again. Give up the old lines instead.
            tracing::warn!(%error, path = %rotated.display(), "cannot keep the rotated etcd log; truncating without it");
            let _ = std::fs::remove_file(&rotated);
        }
        std::fs::File::options()
            .write(true)
            .open(&self.inner.path)?
            .set_len(0)?;
        lines.offset = 0;
        lines.partial.clear();
        Ok(())
    }

    fn push_line(&self, lines: &mut Lines, line: String, broadcast: bool) {
        if broadcast {
            // No receivers is the normal case; nothing to do then.
            let _ = self.inner.sender.send(line.clone());
        }
        let seq = lines.next_seq;
        lines.next_seq += 1;
        lines.ring.push_back((seq, line));
        while lines.ring.len() > self.inner.capacity {
            lines.ring.pop_front();
        }
    }

    /// The last `n` lines.
    #[must_use]
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = self.lock();
        let skip = lines.ring.len().saturating_sub(n);
        lines.ring.iter().skip(skip).map(|(_, l)| l.clone()).collect()
    }

    /// A mark for [`LogTail::since`]: the sequence number of the next line.
    #[must_use]
    pub fn mark(&self) -> u64 {
        self.lock().next_seq
    }

    /// Reads what etcd has written so far, then returns a mark: lines
    /// written before this call are never "since" it.
    #[must_use]
    pub fn mark_now(&self) -> u64 {
        if let Err(error) = self.poll() {
            tracing::debug!(%error, "cannot read etcd log");
        }
        self.mark()
    }

    /// The lines read since `mark` (as many as the tail still holds), after
    /// reading whatever etcd has appended by now.
    #[must_use]
    pub fn since(&self, mark: u64) -> Vec<String> {
        if let Err(error) = self.poll() {
            tracing::debug!(%error, "cannot read etcd log");
        }
        let lines = self.lock();
        lines
            .ring
            .iter()
            .filter(|(seq, _)| *seq >= mark)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// New lines from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.sender.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        // Lines are plain data; a panic elsewhere cannot break their invariants.
        self.inner
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::File::options().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn keeps_the_last_lines_and_waits_for_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let tail = LogTail::new(path.clone(), 3, 1 << 20);
        append(&path, "one\ntwo\nthr");
        tail.poll().unwrap();
        assert_eq!(tail.last(10), ["one", "two"]);
        let mark = tail.mark();
        append(&path, "ee\nfour\nfive\n");
        assert_eq!(tail.since(mark), ["three", "four", "five"]);
        assert_eq!(tail.last(10), ["three", "four", "five"]);
    }

    #[test]
    fn rotates_when_the_file_grows_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let tail = LogTail::new(path.clone(), 100, 4096);
        for i in 0..200 {
            append(&path, &format!("line number {i:04} with some padding text\n"));
        }
        tail.poll().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(std::fs::metadata(path.with_extension("log.1")).unwrap().len() > 4096);
        append(&path, "after rotation\n");
        tail.poll().unwrap();
        assert_eq!(tail.last(1), ["after rotation"]);
    }

    #[test]
    fn primes_from_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        append(&path, "old one\nold two\n");
        let tail = LogTail::new(path.clone(), 10, 1 << 20);
        tail.prime();
        assert_eq!(tail.last(10), ["old one", "old two"]);
        append(&path, "new\n");
        tail.poll().unwrap();
        assert_eq!(tail.last(1), ["new"]);
    }
}
