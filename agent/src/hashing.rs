//! sha256 over readers and files (sha2 0.11 has no `io::Write` impl).

use std::io::Read;

use sha2::{Digest, Sha256};

/// Hashes everything `reader` yields; returns the hex digest and the byte
/// count.
pub fn sha256_reader(reader: &mut impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut total = 0_u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
