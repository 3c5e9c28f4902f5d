//! What the benchmarks share: their settings from the environment, the
//! median they judge on, and a large database to work on.

/// A positive count from the variable `name`, else `default`.
#[must_use]
pub fn count_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The median (the upper one of an even count; 0 for none).
#[must_use]
pub fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Puts `mib` values of 1 MiB through `client`, so that the database
/// holds about `mib` MiB.
pub async fn fill(client: &mut etcd_client::Client, mib: u64) {
    // Incompressible content: a simple generator is enough, bbolt does not
    // compress, but the copies steward makes must not get it for free.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let value: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    for i in 0..mib {
        client
            .put(format!("bench/{i:06}"), value.clone(), None)
            .await
            .expect("fill the database");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_upper_of_two() {
        assert_eq!(median(vec![5, 1, 3]), 3);
        assert_eq!(median(vec![4, 1]), 4);
        assert_eq!(median(Vec::new()), 0);
    }
}
