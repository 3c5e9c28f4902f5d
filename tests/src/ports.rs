//! Ports for test clusters, reserved across every test process at once.
//!
//! Binding to port 0 is not enough for etcd: the peer URLs must be known
//! before any member starts. So a port is leased: a lock file per port
//! (flock, released when the lease drops or the process dies) keeps other
//! test processes away from it, and a bind check skips ports some other
//! program uses. Ports come from below Linux's ephemeral range so outgoing
//! connections do not take them in the meantime.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};

use nix::fcntl::{Flock, FlockArg};

const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A reserved port; the reservation ends when this is dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: Flock<File>,
}

impl PortLease {
    /// The port number.
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("steward-test-ports");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Leases a free port.
#[must_use]
pub fn lease() -> PortLease {
    // Start each process at a different place so parallel test processes
    // rarely contend for the same lock files.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = LAST - FIRST;
    let seed = u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0);
    let dir = lock_dir();
    for _ in 0..span {
        let offset = (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = FIRST + offset;
        let Ok(file) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return PortLease { port, _lock: lock };
        }
    }
    panic!("no free port between {FIRST} and {LAST}");
}
