//! A token bucket per connection for client publishes (`--publish-rate`, `--publish-burst`).
//!
//! Time is passed in, so the bucket is tested without sleeping. A rate of 0 means unlimited
//! (benchmarks). Refusals in a row are counted as strikes: a client that keeps publishing
//! into a refusing bucket is abusive and gets closed with 1008 by its connection.

use std::time::Instant;

/// Refused publishes in a row after which a connection is closed with 1008.
pub const STRIKES_BEFORE_CLOSE: u32 = 50;

/// Whether a publish may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate.
    Allow,
    /// Over the rate: answer `rate_limited`.
    Refuse,
    /// Over the rate for [`STRIKES_BEFORE_CLOSE`] publishes in a row: close the connection.
    Abuse,
}

/// A token bucket refilled at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    strikes: u32,
}

impl TokenBucket {
    /// A full bucket. `rate == 0` disables the limit.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
            strikes: 0,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> Verdict {
        if self.rate <= 0.0 {
            return Verdict::Allow;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= STRIKES_BEFORE_CLOSE {
            Verdict::Abuse
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Verdict::Allow);
        }
        assert_eq!(b.take(t0), Verdict::Refuse);
        // 100 ms at 10/s is one token.
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Verdict::Refuse);
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Verdict::Allow);
        }
        assert_eq!(b.take(later), Verdict::Refuse);
    }

    #[test]
    fn persistent_abuse_escalates_and_zero_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 1, t0);
        assert_eq!(b.take(t0), Verdict::Allow);
        let verdicts: Vec<_> = (0..STRIKES_BEFORE_CLOSE).map(|_| b.take(t0)).collect();
        assert_eq!(verdicts.last(), Some(&Verdict::Abuse));
        assert!(
            verdicts[..verdicts.len() - 1]
                .iter()
                .all(|v| *v == Verdict::Refuse)
        );
        let mut free = TokenBucket::new(0.0, 1, t0);
        assert!((0..10_000).all(|_| free.take(t0) == Verdict::Allow));
    }
}
