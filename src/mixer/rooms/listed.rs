//! Which connections were just sent a room's full member list, so that a rejoin within
//! [`REJOIN_WINDOW`] gets the count instead of the list again.
//!
//! A join's snapshot names up to `--presence-list-max` members (about 155 KB at 1,000), and a
//! `leave` + `subscribe` pair costs two message tokens: without this, one connection inside
//! its rate limit could make the mixer build and the shard send a list of a thousand members
//! many times a second. A connection that rejoins a room within a second of its last full
//! list gets `{"event":"snapshot","count":N,"truncated":true}` (the deltas keep it current
//! from there, and `who` still answers with the list).
//!
//! Only lists longer than [`CHEAP_LIST`] members are remembered (a short list costs no more
//! than the deltas around it), and entries older than the window go once per window, so the
//! map holds at most the full lists of the last two windows: bounded by the joins the rate
//! limits let through, and by [`MAX_ENTRIES`] whatever they are (past it a join is not
//! remembered, so it is never suppressed wrongly, only not suppressed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::messages::ConnRef;

/// A rejoin this soon after a full list gets the count only.
pub const REJOIN_WINDOW: Duration = Duration::from_secs(1);
/// Lists of at most this many members are sent every time.
pub const CHEAP_LIST: usize = 32;
/// Most (connection, room) pairs remembered at once (about 5 MiB: 80 bytes each with the map's own).
pub const MAX_ENTRIES: usize = 65_536;

/// The recent full lists: (connection, room) → when.
#[derive(Debug)]
pub struct Listed {
    sent: HashMap<(ConnRef, Arc<str>), Instant>,
    next_prune: Instant,
}

impl Listed {
    /// Nothing remembered yet.
    pub fn new(now: Instant) -> Listed {
        Listed {
            sent: HashMap::new(),
            next_prune: now + REJOIN_WINDOW,
        }
    }

    /// May `conn`, joining `room` of `members` members at `now`, be sent the full list? If
    /// so and the list is not cheap, that is remembered.
    pub fn may_list(
        &mut self,
        conn: ConnRef,
        room: &Arc<str>,
        members: usize,
        now: Instant,
    ) -> bool {
        self.prune(now);
        let key = (conn, room.clone());
        if let Some(&at) = self.sent.get(&key)
            && now.saturating_duration_since(at) < REJOIN_WINDOW
        {
            return false;
        }
        if members > CHEAP_LIST && self.sent.len() < MAX_ENTRIES {
            self.sent.insert(key, now);
        } else {
            self.sent.remove(&key);
        }
        true
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Forgets what is older than the window, at most once per window.
    fn prune(&mut self, now: Instant) {
        if now < self.next_prune {
            return;
        }
        self.sent
            .retain(|_, at| now.saturating_duration_since(*at) < REJOIN_WINDOW);
        self.next_prune = now + REJOIN_WINDOW;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ConnKey;

    fn conn(n: usize) -> ConnRef {
        ConnRef {
            shard: 0,
            key: ConnKey {
                token: n,
                id: n as u64,
            },
        }
    }

    #[test]
    fn a_rejoin_within_the_window_is_not_listed_again() {
        let t0 = Instant::now();
        let mut listed = Listed::new(t0);
        let room: Arc<str> = Arc::from("room.a");
        assert!(listed.may_list(conn(1), &room, 500, t0));
        assert!(!listed.may_list(conn(1), &room, 500, t0 + Duration::from_millis(300)));
        assert!(!listed.may_list(conn(1), &room, 500, t0 + Duration::from_millis(999)));
        // Another connection, another room: listed.
        assert!(listed.may_list(conn(2), &room, 500, t0 + Duration::from_millis(10)));
        let other: Arc<str> = Arc::from("room.b");
        assert!(listed.may_list(conn(1), &other, 500, t0 + Duration::from_millis(10)));
        // A second after the full list, it is sent again (and the window starts anew).
        let later = t0 + REJOIN_WINDOW;
        assert!(listed.may_list(conn(1), &room, 500, later));
        assert!(!listed.may_list(conn(1), &room, 500, later + Duration::from_millis(500)));
    }

    #[test]
    fn cheap_lists_are_always_sent_and_not_remembered() {
        let t0 = Instant::now();
        let mut listed = Listed::new(t0);
        let room: Arc<str> = Arc::from("room.small");
        for i in 0..10 {
            assert!(listed.may_list(conn(1), &room, CHEAP_LIST, t0 + Duration::from_millis(i)));
        }
        assert!(listed.is_empty());
    }

    #[test]
    fn old_entries_are_pruned_once_per_window() {
        let t0 = Instant::now();
        let mut listed = Listed::new(t0);
        for i in 0..100 {
            let room: Arc<str> = Arc::from(format!("room.{i}"));
            assert!(listed.may_list(conn(i), &room, 100, t0));
        }
        assert_eq!(listed.len(), 100);
        // Not yet a window later: kept.
        let room: Arc<str> = Arc::from("room.x");
        listed.may_list(conn(1000), &room, 100, t0 + Duration::from_millis(900));
        assert_eq!(listed.len(), 101);
        // A window later, the first hundred are gone; the one from 900 ms stays.
        listed.may_list(conn(1001), &room, 10, t0 + REJOIN_WINDOW);
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn the_map_is_bounded() {
        let t0 = Instant::now();
        let mut listed = Listed::new(t0);
        let room: Arc<str> = Arc::from("room.big");
        for i in 0..MAX_ENTRIES + 10 {
            assert!(listed.may_list(conn(i), &room, 100, t0));
        }
        assert_eq!(listed.len(), MAX_ENTRIES);
        // Past the bound a join is listed (never wrongly suppressed), just not remembered.
        assert!(listed.may_list(conn(MAX_ENTRIES + 5), &room, 100, t0));
    }
}
