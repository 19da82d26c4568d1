//! A connection's rate limits: every message a client sends on `/ws` or `/echo` costs a
//! token (`--publish-rate`, `--publish-burst`) and its size in bytes (`--publish-byte-rate`,
//! `--publish-byte-burst`), so a burst of publishes within the limits stays below the outbox
//! of every member that reads (a publish's data is never larger than the message that
//! carried it; the relation is checked in `config.rs`).
//!
//! A message whose work is out of proportion to its size pays for that work: a `subscribe`
//! or `resume` costs a token per topic it names ([`Limiter::take_more`]), and the bytes a
//! replay queues for the client are owed to the byte bucket ([`Limiter::owe`]), which goes
//! below zero (down to minus one burst), so the messages after it wait until it is paid.
//!
//! Time is passed in, so the limits are tested without sleeping. The rates are the server's
//! (passed to each call, not stored per connection); a rate of 0 means unlimited. Refusals
//! in a row are counted as strikes: a client that keeps sending into refusing limits is
//! abusive and gets closed with 1008 by its connection.

use std::time::Instant;

/// Refused messages in a row after which a connection is closed with 1008.
pub const STRIKES_BEFORE_CLOSE: u32 = 50;

/// Whether a message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits.
    Allow,
    /// Over a limit: answer `rate_limited`.
    Refuse,
    /// Over a limit for [`STRIKES_BEFORE_CLOSE`] messages in a row: close the connection.
    Abuse,
}

/// A token bucket's settings: refilled at `rate` per second up to `burst`; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens per second (0: no limit).
    pub rate: f64,
    /// Most tokens held at once.
    pub burst: f64,
}

impl Rate {
    /// A rate of `rate` per second with room for `burst`.
    pub fn new(rate: f64, burst: u64) -> Self {
        Rate {
            rate,
            burst: burst.max(1) as f64,
        }
    }

    fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }
}

/// One connection's two buckets (messages and publish bytes) on one clock, plus its strikes.
#[derive(Debug, Clone)]
pub struct Limiter {
    messages: f64,
    bytes: f64,
    last: Instant,
    strikes: u32,
}

impl Limiter {
    /// Full buckets.
    pub fn new(messages: Rate, bytes: Rate, now: Instant) -> Self {
        Limiter {
            messages: messages.burst,
            bytes: bytes.burst,
            last: now,
            strikes: 0,
        }
    }

    fn refill(&mut self, messages: Rate, bytes: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.messages = (self.messages + elapsed * messages.rate).min(messages.burst);
        self.bytes = (self.bytes + elapsed * bytes.rate).min(bytes.burst);
    }

    /// Charges one message of `len` bytes: a token from the message bucket and `len` from
    /// the byte bucket, both or neither. A refusal is a strike; a message that passes clears
    /// them.
    pub fn take(&mut self, messages: Rate, bytes: Rate, now: Instant, len: usize) -> Verdict {
        if messages.unlimited() {
            return Verdict::Allow;
        }
        self.refill(messages, bytes, now);
        let len = if bytes.unlimited() { 0.0 } else { len as f64 };
        if self.messages >= 1.0 && self.bytes >= len {
            self.messages -= 1.0;
            self.bytes -= len;
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strike()
    }

    /// Charges `tokens` more message tokens for the message just taken (a `subscribe` or
    /// `resume` naming that many topics beyond its first): all or none.
    pub fn take_more(
        &mut self,
        messages: Rate,
        bytes: Rate,
        now: Instant,
        tokens: usize,
    ) -> Verdict {
        if messages.unlimited() || tokens == 0 {
            return Verdict::Allow;
        }
        self.refill(messages, bytes, now);
        let tokens = tokens as f64;
        if self.messages >= tokens {
            self.messages -= tokens;
            return Verdict::Allow;
        }
        self.strike()
    }

    /// Records `len` bytes the server queued on the client's behalf (a replay) as owed to
    /// the byte bucket: it may go down to minus one burst, and the client's next messages
    /// wait until the debt is paid back at the byte rate.
    pub fn owe(&mut self, messages: Rate, bytes: Rate, now: Instant, len: usize) {
        if messages.unlimited() || bytes.unlimited() {
            return;
        }
        self.refill(messages, bytes, now);
        self.bytes = (self.bytes - len as f64).max(-bytes.burst);
    }

    fn strike(&mut self) -> Verdict {
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

    const NO_BYTES: Rate = Rate {
        rate: 0.0,
        burst: 1.0,
    };

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let msgs = Rate::new(10.0, 3);
        let mut b = Limiter::new(msgs, NO_BYTES, t0);
        for _ in 0..3 {
            assert_eq!(b.take(msgs, NO_BYTES, t0, 10), Verdict::Allow);
        }
        assert_eq!(b.take(msgs, NO_BYTES, t0, 10), Verdict::Refuse);
        // 100 ms at 10/s is one token.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take(msgs, NO_BYTES, t1, 10), Verdict::Allow);
        assert_eq!(b.take(msgs, NO_BYTES, t1, 10), Verdict::Refuse);
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(msgs, NO_BYTES, later, 10), Verdict::Allow);
        }
        assert_eq!(b.take(msgs, NO_BYTES, later, 10), Verdict::Refuse);
    }

    #[test]
    fn bytes_are_a_bucket_of_their_own() {
        let t0 = Instant::now();
        let msgs = Rate::new(100.0, 200);
        let bytes = Rate::new(1000.0, 3000);
        let mut b = Limiter::new(msgs, bytes, t0);
        assert_eq!(b.take(msgs, bytes, t0, 2000), Verdict::Allow);
        assert_eq!(b.take(msgs, bytes, t0, 2000), Verdict::Refuse);
        assert_eq!(b.take(msgs, bytes, t0, 1000), Verdict::Allow);
        // A refused message took no message token either: 198 of 200 are left.
        for _ in 0..198 {
            assert_eq!(b.take(msgs, bytes, t0, 0), Verdict::Allow);
        }
        assert_eq!(b.take(msgs, bytes, t0, 0), Verdict::Refuse);
        // One second refills 1000 bytes, not more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(msgs, bytes, t1, 1001), Verdict::Refuse);
        assert_eq!(b.take(msgs, bytes, t1, 1000), Verdict::Allow);
    }

    #[test]
    fn persistent_abuse_escalates_and_zero_is_unlimited() {
        let t0 = Instant::now();
        let msgs = Rate::new(1.0, 1);
        let mut b = Limiter::new(msgs, NO_BYTES, t0);
        assert_eq!(b.take(msgs, NO_BYTES, t0, 1), Verdict::Allow);
        let verdicts: Vec<_> = (0..STRIKES_BEFORE_CLOSE)
            .map(|_| b.take(msgs, NO_BYTES, t0, 1))
            .collect();
        assert_eq!(verdicts.last(), Some(&Verdict::Abuse));
        assert!(
            verdicts[..verdicts.len() - 1]
                .iter()
                .all(|v| *v == Verdict::Refuse)
        );
        // Messages refused for their bytes strike too, though tokens remain.
        let many = Rate::new(1000.0, 1000);
        let bytes = Rate::new(10.0, 10);
        let mut b = Limiter::new(many, bytes, t0);
        for _ in 0..STRIKES_BEFORE_CLOSE - 1 {
            assert_eq!(b.take(many, bytes, t0, 11), Verdict::Refuse);
        }
        // One that passes clears the strikes.
        assert_eq!(b.take(many, bytes, t0, 1), Verdict::Allow);
        assert_eq!(b.take(many, bytes, t0, 11), Verdict::Refuse);
        // A message rate of 0 lifts both limits (benchmarks).
        let free = Rate::new(0.0, 1);
        let mut b = Limiter::new(free, bytes, t0);
        assert!((0..10_000).all(|_| b.take(free, bytes, t0, 1 << 20) == Verdict::Allow));
    }

    #[test]
    fn many_topics_cost_many_tokens_and_replays_are_owed() {
        let t0 = Instant::now();
        let msgs = Rate::new(100.0, 10);
        let bytes = Rate::new(1000.0, 2000);
        let mut b = Limiter::new(msgs, bytes, t0);
        assert_eq!(b.take(msgs, bytes, t0, 10), Verdict::Allow);
        assert_eq!(
            b.take_more(msgs, bytes, t0, 10),
            Verdict::Refuse,
            "all or none"
        );
        assert_eq!(b.take_more(msgs, bytes, t0, 9), Verdict::Allow);
        assert_eq!(b.take(msgs, bytes, t0, 0), Verdict::Refuse);
        // A replay of 3000 bytes leaves the bucket 1010 below zero; never more than a burst.
        let t1 = t0 + Duration::from_secs(1);
        b.owe(msgs, bytes, t1, 3000);
        assert_eq!(b.take(msgs, bytes, t1, 0), Verdict::Refuse);
        b.owe(msgs, bytes, t1, 1 << 30);
        // One burst below zero, paid back at 1000/s: 2 s to zero, a little more for 10 B.
        let t3 = t1 + Duration::from_secs(2);
        assert_eq!(b.take(msgs, bytes, t3, 10), Verdict::Refuse);
        let t4 = t3 + Duration::from_millis(20);
        assert_eq!(b.take(msgs, bytes, t4, 10), Verdict::Allow);
    }
}
