//! etcd's output in the journal, next to the agent's own log.
//!
//! etcd writes into `logs/etcd.log` (see [`crate::process::spawn`]: a file,
//! so etcd outlives the agent), which TailLogs and failure reports read.
//! When the agent itself logs to journald, it also forwards every line etcd
//! appends there to the journal, over journald's native protocol, with
//! `SYSLOG_IDENTIFIER=etcd` and a priority read from the line. The entries
//! belong to the agent's unit (journald goes by the sender's cgroup), so
//! `journalctl -u steward-agent` shows both logs and `journalctl -u
//! steward-agent -t etcd` etcd's alone.
//!
//! etcd's own `--log-outputs=systemd/journal` (zap logger, etcd 3.4 to 3.6)
//! cannot be combined with any other output, so etcd.log would lose etcd's
//! log, and etcd refuses to start where no journald socket exists; the
//! agent therefore does not use it.
//!
//! Lines etcd writes while no agent runs (between an agent's stop and the
//! next one's start) are in etcd.log but are not forwarded.

use std::path::PathBuf;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::logs::LogTail;

/// journald's socket for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// The identifier etcd's lines carry (`journalctl -t etcd`).
pub const IDENTIFIER: &str = "etcd";

/// Longer lines are cut: a datagram has a size limit, and journald cuts
/// stream lines at 48 KiB too.
const MAX_MESSAGE_BYTES: usize = 48 * 1024;

/// The syslog priority of one line of etcd output: the level of a zap line
/// (JSON, or 3.6's `--log-format=console`), the letter of a capnslog line
/// (etcd 3.3, and 3.4's default logger), critical for a Go panic, info
/// otherwise.
#[must_use]
pub fn priority(line: &str) -> u8 {
    if line.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Level {
            level: String,
        }
        if let Ok(Level { level }) = serde_json::from_str::<Level>(line) {
            return zap_priority(&level).unwrap_or(6);
        }
    }
    // zap console: time, level, caller, message, separated by tabs.
    if let Some(level) = line.split('\t').nth(1)
        && let Some(priority) = zap_priority(level)
    {
        return priority;
    }
    // capnslog: "2024-01-02 03:04:05.678901 I | etcdserver: ..."
    let mut fields = line.splitn(4, ' ');
    if let (Some(_date), Some(_time), Some(letter), Some(rest)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
        && rest.starts_with('|')
        && let Some(priority) = capnslog_priority(letter)
    {
        return priority;
    }
    if line.starts_with("panic: ") || line.starts_with("fatal error: ") {
        return 2;
    }
    6
}

fn zap_priority(level: &str) -> Option<u8> {
    Some(match level.to_ascii_lowercase().as_str() {
        "debug" => 7,
        "info" => 6,
        "warn" => 4,
        "error" => 3,
        "dpanic" | "panic" | "fatal" => 2,
        _ => return None,
    })
}

fn capnslog_priority(letter: &str) -> Option<u8> {
    Some(match letter {
        "C" => 2,
        "E" => 3,
        "W" => 4,
        "N" => 5,
        "I" => 6,
        "D" | "T" => 7,
        _ => return None,
    })
}

/// One journal entry in the native protocol: `KEY=value` lines, MESSAGE in
/// the length-prefixed form so that no byte of it can end the field.
#[must_use]
pub fn entry(message: &str, priority: u8) -> Vec<u8> {
    let mut cut = message.len().min(MAX_MESSAGE_BYTES);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = &message.as_bytes()[..cut];
    let mut entry = Vec::with_capacity(message.len() + 64);
    entry.extend_from_slice(format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={IDENTIFIER}\nMESSAGE\n").as_bytes());
    entry.extend_from_slice(&(message.len() as u64).to_le_bytes());
    entry.extend_from_slice(message);
    entry.push(b'\n');
    entry
}

/// Forwards the lines `tail` reads from etcd.log to journald at `socket`
/// until `shutdown`.
pub fn spawn_forwarder(tail: &LogTail, socket: PathBuf, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let mut lines = tail.subscribe();
    tokio::spawn(async move {
        let sender = match tokio::net::UnixDatagram::unbound() {
            Ok(sender) => sender,
            Err(error) => {
                tracing::warn!(%error, "cannot forward etcd's output to the journal");
                return;
            }
        };
        tracing::info!(socket = %socket.display(), "forwarding etcd's output to the journal (journalctl -t etcd)");
        // Reported once per run of failures: journald may be restarting.
        let mut failing = false;
        loop {
            let line = tokio::select! {
                () = shutdown.cancelled() => return,
                line = lines.recv() => line,
            };
            let line = match line {
                Ok(line) => line,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "etcd wrote faster than the journal took it; lines skipped (they are in etcd.log)"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            match sender.send_to(&entry(&line, priority(&line)), &socket).await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("forwarding etcd's output to the journal again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot forward etcd's output to the journal (it is still in etcd.log)");
                }
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    #[test]
    fn priorities_of_every_etcd_log_format() {
        let zap = r#"{"level":"warn","ts":"2024-01-02T03:04:05.678Z","caller":"etcdserver/server.go:1","msg":"slow"}"#;
        assert_eq!(priority(zap), 4);
        assert_eq!(priority(r#"{"level":"error","msg":"x"}"#), 3);
        assert_eq!(priority(r#"{"level":"fatal","msg":"x"}"#), 2);
        assert_eq!(priority(r#"{"level":"info","msg":"x"}"#), 6);
        assert_eq!(priority(r#"{"level":"debug","msg":"x"}"#), 7);
        assert_eq!(
            priority("2024-01-02T03:04:05.678Z\tERROR\tetcdserver/server.go:1\tfailed"),
            3
        );
        assert_eq!(priority("2024-01-02 03:04:05.678901 W | etcdserver: slow"), 4);
        assert_eq!(priority("2024-01-02 03:04:05.678901 E | rafthttp: lost"), 3);
        assert_eq!(priority("2024-01-02 03:04:05.678901 C | etcdmain: gone"), 2);
        assert_eq!(priority("2024-01-02 03:04:05.678901 N | etcdserver: note"), 5);
        assert_eq!(priority("2024-01-02 03:04:05.678901 I | etcdserver: ok"), 6);
        assert_eq!(priority("panic: runtime error: index out of range"), 2);
        assert_eq!(priority("goroutine 1 [running]:"), 6);
        assert_eq!(priority("{not json"), 6);
        assert_eq!(priority(""), 6);
    }

    #[test]
    fn an_entry_is_native_protocol_with_a_binary_safe_message() {
        let entry = entry("héllo", 4);
        let head = b"PRIORITY=4\nSYSLOG_IDENTIFIER=etcd\nMESSAGE\n";
        assert!(entry.starts_with(head));
        let rest = &entry[head.len()..];
        assert_eq!(&rest[..8], &6u64.to_le_bytes());
        assert_eq!(&rest[8..], "héllo\n".as_bytes());
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let line = "é".repeat(MAX_MESSAGE_BYTES);
        let entry = entry(&line, 6);
        let head = b"PRIORITY=6\nSYSLOG_IDENTIFIER=etcd\nMESSAGE\n".len();
        let length = u64::from_le_bytes(entry[head..head + 8].try_into().unwrap());
        assert!(length <= MAX_MESSAGE_BYTES as u64);
        assert!(std::str::from_utf8(&entry[head + 8..entry.len() - 1]).is_ok());
    }

    #[tokio::test]
    async fn lines_appended_to_etcd_log_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("journal.socket");
        let journal = tokio::net::UnixDatagram::bind(&socket).unwrap();
        let log = dir.path().join("etcd.log");
        let tail = LogTail::new(log.clone(), 10, 1 << 20);
        let stop = CancellationToken::new();
        let forwarder = spawn_forwarder(&tail, socket, stop.clone());

        let mut file = std::fs::File::options().create(true).append(true).open(&log).unwrap();
        file.write_all(b"{\"level\":\"error\",\"msg\":\"disk full\"}\nplain\n")
            .unwrap();
        tail.poll().unwrap();

        let mut buf = vec![0; 4096];
        let mut received = Vec::new();
        for _ in 0..2 {
            let n = tokio::time::timeout(Duration::from_secs(10), journal.recv(&mut buf))
                .await
                .expect("an entry arrives")
                .unwrap();
            received.push(buf[..n].to_vec());
        }
        assert_eq!(received[0], entry("{\"level\":\"error\",\"msg\":\"disk full\"}", 3));
        assert_eq!(received[1], entry("plain", 6));
        stop.cancel();
        forwarder.await.unwrap();
    }
}
