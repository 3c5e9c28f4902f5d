//! Refusals of unidentified peers, logged in aggregate: the first from a
//! peer address is logged at once, the rest within the next minute are
//! only counted, and the count goes into the first line after that minute.
//! A peer without a steward certificate can make the agent refuse as often
//! as it likes; it cannot make the agent write a line each time. (The
//! metrics count every refusal.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long refusals from one peer share a log line.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Peers remembered at once; beyond that, refusals from new peers are
/// counted in the metrics only until older windows end.
const MAX_PEERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    suppressed: u64,
}

/// Per peer address, when its current window began and what it held back.
#[derive(Debug, Default)]
pub struct RefusalLog {
    peers: Mutex<HashMap<IpAddr, Window>>,
}

impl RefusalLog {
    /// Whether a refusal from `peer` at `now` is to be logged: `Some(n)`
    /// with the refusals held back since the last line, `None` to count it
    /// only.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = peers.get_mut(&peer) {
            if now.saturating_duration_since(window.started) < WINDOW {
                window.suppressed += 1;
                return None;
            }
            let held_back = window.suppressed;
            *window = Window {
                started: now,
                suppressed: 0,
            };
            return Some(held_back);
        }
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
            if peers.len() >= MAX_PEERS {
                return None;
            }
        }
        peers.insert(
            peer,
            Window {
                started: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// ", and N more from it in the last minute" when `held_back` is not 0.
#[must_use]
pub fn held_back_text(held_back: u64) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!(" ({held_back} more from this address since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_per_minute_with_the_count_held_back() {
        let log = RefusalLog::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(log.admit(a, t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(log.admit(a, t0 + Duration::from_millis(i)), None);
        }
        // Another peer has a window of its own.
        assert_eq!(log.admit(b, t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(log.admit(a, t0 + WINDOW), Some(1000));
        assert_eq!(log.admit(a, t0 + WINDOW + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_peers_remembered_are_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..MAX_PEERS {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(u32::try_from(i).unwrap()));
            assert_eq!(log.admit(peer, t0), Some(0));
        }
        let newcomer: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(log.admit(newcomer, t0), None, "counted only while the table is full");
        assert_eq!(log.admit(newcomer, t0 + WINDOW), Some(0), "old windows make room");
        assert!(log.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
