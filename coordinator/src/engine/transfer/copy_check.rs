//! Checking the copy of a snapshot that an agent sends as it takes it
//! (TakeAndSendSnapshot). The agent checks etcd's sha256 trailer over the
//! very bytes it sends, and ends the stream with the CRC-32 of what it
//! sent. A copy of the recorded size whose CRC-32 matches holds those
//! bytes: the caller's host, where the backups of every cluster it drives
//! arrive, does not hash each GiB a second time. An agent that sends no
//! CRC (an older one) leaves the trailer check to this side: computed as
//! the bytes go by where the copy cannot be read again (a stream), by
//! reading the written file once otherwise.

use steward_proto::trailer::{Hashed, Summing, TrailerHasher};

use crate::engine::error::VerifyProblem;
use crate::engine::transfer::download::verify;

/// What a copy's writing thread computes: the CRC-32 and size of every
/// byte, and etcd's trailer check when asked for.
#[derive(Debug, Default)]
pub struct CopyCheck {
    crc: crc32fast::Hasher,
    size: u64,
    trailer: Option<TrailerHasher>,
}

impl CopyCheck {
    /// For a copy that can be read again (a file).
    #[must_use]
    pub fn crc_only() -> Self {
        Self::default()
    }

    /// For a copy that cannot be read again (a stream): the trailer check
    /// too, in case the agent sends no CRC.
    #[must_use]
    pub fn with_trailer() -> Self {
        Self {
            trailer: Some(TrailerHasher::default()),
            ..Self::default()
        }
    }
}

/// What a [`CopyCheck`] made of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Bytes written.
    pub size: u64,
    /// Their CRC-32 (IEEE).
    pub crc32: u32,
    /// The trailer check, when it was asked for.
    pub hashed: Option<Hashed>,
}

impl Summing for CopyCheck {
    type Summary = Copied;

    fn update(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.size += bytes.len() as u64;
        if let Some(trailer) = self.trailer.as_mut() {
            trailer.update(bytes);
        }
    }

    fn finish(self) -> Copied {
        Copied {
            size: self.size,
            crc32: self.crc.finalize(),
            hashed: self.trailer.map(TrailerHasher::finish),
        }
    }
}

/// The verdict on a copy, as far as its summary goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyVerdict {
    /// The copy holds the bytes the agent checked and recorded.
    Good,
    /// The agent sent no CRC and no trailer was computed here: the written
    /// file must be read and its trailer checked.
    ReadBack,
}

/// Checks `copied` against the agent's record (`recorded_sha256` hex and
/// `recorded_size`) and the CRC-32 it sent, if any.
///
/// # Errors
/// The first [`VerifyProblem`] found.
pub fn verify_copy(
    copied: Copied,
    recorded_sha256: &str,
    recorded_size: u64,
    sent_crc32: Option<u32>,
) -> Result<CopyVerdict, VerifyProblem> {
    if copied.size != recorded_size {
        return Err(VerifyProblem::SizeMismatch {
            recorded: recorded_size,
            received: copied.size,
        });
    }
    if let Some(sent) = sent_crc32
        && sent != copied.crc32
    {
        return Err(VerifyProblem::CrcMismatch {
            sent,
            received: copied.crc32,
        });
    }
    match (copied.hashed, sent_crc32) {
        (Some(hashed), _) => verify(hashed, recorded_sha256, recorded_size).map(|_| CopyVerdict::Good),
        (None, Some(_)) => Ok(CopyVerdict::Good),
        (None, None) => Ok(CopyVerdict::ReadBack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn snapshot(content: &[u8]) -> Vec<u8> {
        let mut bytes = content.to_vec();
        bytes.extend_from_slice(&sha2::Sha256::digest(content));
        bytes
    }

    fn copy_of(bytes: &[u8], check: CopyCheck) -> Copied {
        let mut check = check;
        for piece in bytes.chunks(7) {
            check.update(piece);
        }
        check.finish()
    }

    #[test]
    fn a_copy_with_the_agents_size_and_crc_is_good_without_a_hash() {
        let bytes = snapshot(b"a bbolt database, or close enough");
        let sha = hex::encode(sha2::Sha256::digest(&bytes[..bytes.len() - 32]));
        let len = bytes.len() as u64;
        let copied = copy_of(&bytes, CopyCheck::crc_only());
        assert_eq!(copied.hashed, None, "no sha256 computed");
        assert_eq!(copied.crc32, crc32fast::hash(&bytes));
        let sent = Some(crc32fast::hash(&bytes));
        assert_eq!(verify_copy(copied.clone(), &sha, len, sent), Ok(CopyVerdict::Good));
        // A stream's copy also checks the trailer.
        let streamed = copy_of(&bytes, CopyCheck::with_trailer());
        assert_eq!(verify_copy(streamed.clone(), &sha, len, sent), Ok(CopyVerdict::Good));
        assert_eq!(verify_copy(streamed, &sha, len, None), Ok(CopyVerdict::Good));
        // An older agent sends no CRC: a file must be read again.
        assert_eq!(verify_copy(copied, &sha, len, None), Ok(CopyVerdict::ReadBack));
    }

    #[test]
    fn a_flipped_byte_or_a_lost_one_is_refused() {
        let bytes = snapshot(b"a bbolt database, or close enough");
        let sha = hex::encode(sha2::Sha256::digest(&bytes[..bytes.len() - 32]));
        let len = bytes.len() as u64;
        let sent = Some(crc32fast::hash(&bytes));
        let mut flipped = bytes.clone();
        flipped[3] ^= 0x10;
        let problem = verify_copy(copy_of(&flipped, CopyCheck::crc_only()), &sha, len, sent).unwrap_err();
        assert!(matches!(problem, VerifyProblem::CrcMismatch { .. }), "{problem}");
        assert!(problem.to_string().contains("CRC-32"), "{problem}");
        let problem = verify_copy(copy_of(&bytes[1..], CopyCheck::crc_only()), &sha, len, sent).unwrap_err();
        assert!(matches!(problem, VerifyProblem::SizeMismatch { .. }), "{problem}");
        // Without a CRC from the agent, a stream's trailer check catches it.
        let problem = verify_copy(copy_of(&flipped, CopyCheck::with_trailer()), &sha, len, None).unwrap_err();
        assert!(matches!(problem, VerifyProblem::TrailerMismatch { .. }), "{problem}");
    }
}
