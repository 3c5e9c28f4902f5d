//! Free loopback ports for a local cluster: a client, a peer and an agent
//! port per member.
//!
//! etcd's peer URLs must be known before any member starts, so binding to
//! port 0 in the member itself is not possible: ports are chosen here by
//! binding them (all at once, so they differ), and released just before the
//! agents and etcd bind them. Something else can take a port in between;
//! the caller then sees "address already in use" and tries again with other
//! ports (see [`super::up()`]).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::str::FromStr;

use super::LocalError;

/// `--port-range FIRST-LAST`: the ports a local cluster may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port.
    pub first: u16,
    /// The highest port (inclusive).
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || format!("{text:?} is not a port range like 40000-40999");
        let (first, last) = text.trim().split_once('-').ok_or_else(malformed)?;
        let first: u16 = first.trim().parse().map_err(|_| malformed())?;
        let last: u16 = last.trim().parse().map_err(|_| malformed())?;
        if first == 0 || first > last {
            return Err(format!(
                "{text:?}: the first port must be at least 1 and not above the last"
            ));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Where ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortSource {
    /// Whatever free ports the kernel hands out for port 0 (its ephemeral
    /// range).
    #[default]
    Kernel,
    /// Free ports from this range, starting at a varying place so two
    /// clusters started at once rarely try the same ports.
    Range(PortRange),
}

/// `count` distinct free loopback ports, none of them in `avoid` (ports
/// that failed an earlier attempt).
///
/// # Errors
/// [`LocalError::NoFreePorts`] when not enough free ports are found.
pub fn pick(count: usize, source: PortSource, avoid: &BTreeSet<u16>) -> Result<Vec<u16>, LocalError> {
    // Every chosen port stays bound until all are chosen, so they differ.
    let mut held: Vec<TcpListener> = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    match source {
        PortSource::Kernel => {
            // The kernel may hand out an avoided port again; a bounded number
            // of tries keeps that from looping.
            for _ in 0..count.saturating_mul(4).max(16) {
                if ports.len() == count {
                    break;
                }
                let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
                    continue;
                };
                let Ok(port) = listener.local_addr().map(|a| a.port()) else {
                    continue;
                };
                held.push(listener);
                if !avoid.contains(&port) {
                    ports.push(port);
                }
            }
        }
        PortSource::Range(range) => {
            let span = u32::from(range.last - range.first) + 1;
            let start = seed() % span;
            for step in 0..span {
                if ports.len() == count {
                    break;
                }
                let Ok(offset) = u16::try_from((start + step) % span) else {
                    continue;
                };
                let port = range.first + offset;
                if avoid.contains(&port) {
                    continue;
                }
                if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                    held.push(listener);
                    ports.push(port);
                }
            }
        }
    }
    if ports.len() < count {
        return Err(LocalError::NoFreePorts {
            wanted: count,
            source_text: match source {
                PortSource::Kernel => "the kernel's ephemeral range".to_owned(),
                PortSource::Range(range) => format!("--port-range {range}"),
            },
        });
    }
    Ok(ports)
}

/// A start offset that differs between processes and runs; it only spreads
/// concurrent pickers apart, nothing depends on it being random.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().wrapping_mul(2_654_435_761)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            "40000-40099".parse::<PortRange>().unwrap(),
            PortRange {
                first: 40000,
                last: 40099
            }
        );
        assert_eq!("40000-40099".parse::<PortRange>().unwrap().to_string(), "40000-40099");
        for bad in ["40000", "a-b", "40099-40000", "0-10", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn kernel_ports_are_distinct_and_free() {
        let ports = pick(9, PortSource::Kernel, &BTreeSet::new()).unwrap();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 9);
        for port in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }

    #[test]
    fn range_ports_stay_in_the_range_skip_busy_and_avoided_ones() {
        // Clear of the 20000-32000 that the end-to-end harness leases.
        let range = PortRange {
            first: 44_900,
            last: 44_919,
        };
        let busy = (44_900..=44_919).find_map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok());
        let busy_port = busy.as_ref().map(|l| l.local_addr().unwrap().port());
        let avoid: BTreeSet<u16> = [44_905, 44_906].into();
        let ports = pick(5, PortSource::Range(range), &avoid).unwrap();
        assert_eq!(ports.len(), 5);
        for port in &ports {
            assert!((44_900..=44_919).contains(port), "{port}");
            assert!(!avoid.contains(port));
            assert_ne!(Some(*port), busy_port);
        }
        let error = pick(30, PortSource::Range(range), &avoid).unwrap_err();
        assert!(error.to_string().contains("--port-range 44900-44919"), "{error}");
    }
}
