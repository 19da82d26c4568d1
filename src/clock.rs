//! The wall clock the threads stamp messages with.
//!
//! The mixer stamps each broadcast with the time it was made, the shards compare that stamp
//! with the time they wrote it (broadcast latency), and the providers stamp what they produce.
//! All of them read the clock through [`unix_micros`], so they agree on the unit and on what
//! a clock before the epoch gives.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_microseconds_after_2020() {
        // 2020-01-01 in µs: a clock in seconds or milliseconds would be far below it.
        assert!(unix_micros() > 1_577_836_800_000_000);
    }
}
