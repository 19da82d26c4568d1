//! A hashed timer wheel for per-connection deadlines (handshake, ping, idle, close).
//!
//! Each connection has at most one entry: the tick at which its earliest deadline falls.
//! Activity never touches the wheel; a connection only updates its own timestamps, and when
//! its entry fires the shard asks it (`Conn::on_tick(now)`) what is really due and where to
//! schedule next. Moving an entry earlier, or forgetting it when its connection closes,
//! cancels it in its slot (a scan of that one slot), so the wheel holds live entries only and
//! its memory follows the connections, not how many came and went. Arming and expiring are
//! O(1), and a turn never scans all 20,000 connections. Deadlines past the wheel's horizon
//! land in the last slot and are simply re-checked when it comes around.
//!
//! Time is passed in (`now`), never read here, so the wheel is tested without sleeping.

use std::time::{Duration, Instant};

/// Slots of `tick` each, covering `slots * tick` of future. `K` names an entry's owner: a
/// shard's wheel holds `ConnKey`s (token and id, so an entry left by a connection whose token
/// was reused since is told apart).
#[derive(Debug)]
pub struct TimerWheel<K> {
    /// Time of tick 0.
    origin: Instant,
    /// Width of one slot, in nanoseconds.
    tick_ns: u64,
    /// Entries per slot; slot = tick index modulo the number of slots.
    slots: Vec<Vec<K>>,
    /// The next tick index not yet expired.
    next: u64,
    /// Live entries, so the shard knows whether it must wake for the wheel at all.
    len: usize,
}

impl<K: Copy> TimerWheel<K> {
    /// A wheel of `slots` slots of `tick` each, starting at `now`.
    pub fn new(now: Instant, tick: Duration, slots: usize) -> Self {
        assert!(
            slots > 1 && !tick.is_zero(),
            "a wheel needs slots and a tick width"
        );
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        TimerWheel {
            origin: now,
            tick_ns,
            slots: vec![Vec::new(); slots],
            next: 0,
            len: 0,
        }
    }

    /// Nanoseconds from the origin to `at` (0 for instants before it).
    fn nanos_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The tick an entry for `at` would land on now (see [`TimerWheel::schedule`]), so an
    /// owner can tell whether a new deadline comes before its live entry without adding one.
    pub fn tick_of(&self, at: Instant) -> u64 {
        // Round up, so an entry never fires before its deadline.
        let tick = self.nanos_since_origin(at).div_ceil(self.tick_ns);
        let horizon = self.next + self.slots.len() as u64 - 1;
        tick.clamp(self.next, horizon)
    }

    /// Schedules `key` for `at` and returns the tick it landed on; the owner keeps that tick
    /// to recognise its live entry (older entries for the same key are then stale).
    pub fn schedule(&mut self, key: K, at: Instant) -> u64 {
        let tick = self.tick_of(at);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push(key);
        self.len += 1;
        tick
    }

    /// Removes `key`'s entry scheduled on `tick` (as [`TimerWheel::schedule`] returned it);
    /// false if there is none (it fired, or was cancelled already).
    pub fn cancel(&mut self, key: K, tick: u64) -> bool
    where
        K: PartialEq,
    {
        if tick < self.next {
            return false;
        }
        let slot = (tick % self.slots.len() as u64) as usize;
        let entries = &mut self.slots[slot];
        match entries.iter().position(|k| *k == key) {
            Some(i) => {
                entries.swap_remove(i);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Moves every entry whose tick has passed at `now` into `out`, with the tick it was
    /// scheduled for (so stale entries can be told apart).
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(K, u64)>) {
        let due = self.nanos_since_origin(now) / self.tick_ns;
        if due < self.next {
            return;
        }
        // Live entries lie in [next, next + slots), one tick per slot, so a long stall never
        // needs more than one lap.
        let last = due.min(self.next + self.slots.len() as u64 - 1);
        for tick in self.next..=last {
            let slot = (tick % self.slots.len() as u64) as usize;
            self.len -= self.slots[slot].len();
            out.extend(self.slots[slot].drain(..).map(|k| (k, tick)));
        }
        self.next = due + 1;
    }

    /// When the next tick fires, or `None` when the wheel is empty. Coarse (the next tick
    /// boundary), which is all a poll timeout needs.
    pub fn next_wakeup(&self) -> Option<Instant> {
        (self.len > 0).then(|| self.origin + Duration::from_nanos(self.tick_ns * self.next))
    }

    /// Entries in the wheel.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn wheel(t0: Instant) -> TimerWheel<(usize, u64)> {
        TimerWheel::new(t0, 10 * MS, 8)
    }

    fn fired(w: &mut TimerWheel<(usize, u64)>, now: Instant) -> Vec<usize> {
        let mut out = vec![];
        w.expire(now, &mut out);
        out.into_iter().map(|((t, _), _)| t).collect()
    }

    #[test]
    fn fires_at_or_after_the_deadline_never_before() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.schedule((1, 1), t0 + 25 * MS);
        assert!(fired(&mut w, t0 + 20 * MS).is_empty());
        assert!(fired(&mut w, t0 + 29 * MS).is_empty());
        assert_eq!(fired(&mut w, t0 + 30 * MS), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_the_next_expire() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let _ = fired(&mut w, t0 + 50 * MS);
        w.schedule((2, 2), t0);
        assert_eq!(fired(&mut w, t0 + 60 * MS), vec![2]);
    }

    #[test]
    fn far_deadlines_clamp_to_the_horizon_and_report_their_tick() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let tick = w.schedule((3, 3), t0 + Duration::from_secs(10));
        assert_eq!(tick, 7);
        assert_eq!(fired(&mut w, t0 + 70 * MS), vec![3]);
    }

    #[test]
    fn a_long_stall_expires_everything_once() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..8 {
            w.schedule((i, i as u64), t0 + (i as u32 * 10) * MS);
        }
        let mut got = fired(&mut w, t0 + Duration::from_secs(100));
        got.sort();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert!(w.is_empty());
        // And scheduling afterwards still works.
        w.schedule((9, 9), t0 + Duration::from_secs(100) + 15 * MS);
        assert_eq!(
            fired(&mut w, t0 + Duration::from_secs(100) + 30 * MS),
            vec![9]
        );
    }

    #[test]
    fn a_cancelled_entry_never_fires_and_leaves_the_wheel() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let a = w.schedule((1, 1), t0 + 25 * MS);
        w.schedule((2, 2), t0 + 25 * MS);
        assert!(w.cancel((1, 1), a));
        assert!(!w.cancel((1, 1), a), "once");
        assert_eq!(w.len(), 1);
        assert_eq!(fired(&mut w, t0 + 30 * MS), vec![2]);
        // A fired entry cannot be cancelled any more.
        assert!(!w.cancel((2, 2), a));
        assert!(w.is_empty());
    }

    #[test]
    fn next_wakeup_tracks_emptiness() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        assert_eq!(w.next_wakeup(), None);
        w.schedule((1, 1), t0 + 35 * MS);
        assert!(w.next_wakeup().unwrap() <= t0 + 40 * MS);
    }
}
