//! How the churner's rejoin snapshots are judged: a connection's first snapshot of a room is
//! its join, each later one a rejoin, a count only or a full list, and a full list is due
//! again only [`REJOIN_WINDOW`] after the last (docs/protocol.md).

use std::time::Instant;

use super::super::ops;
use super::ARRIVAL_MARGIN;
use crate::mixer::rooms::listed::REJOIN_WINDOW;

/// What the rejoin snapshots were.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejoins {
    /// Snapshots after each connection's first.
    pub rejoins: u64,
    /// Of them, count only (no `members`).
    pub count_only: u64,
    /// Of them, full lists.
    pub lists: u64,
    /// Full lists that came sooner than [`REJOIN_WINDOW`] (less [`ARRIVAL_MARGIN`]) after
    /// the connection's last one: the ones the server should have cut.
    pub early_lists: u64,
    /// Bytes of every rejoin snapshot.
    pub bytes: u64,
}

/// Sorts the room's snapshots (`room`, in arrival order; `starts[k]` the index of
/// connection `k`'s first): a connection's first is its join, each later one a rejoin, a
/// count only or a full list; a full list is due again only [`REJOIN_WINDOW`] after the
/// last (docs/protocol.md).
pub fn rejoins(room: &[&ops::Snapshot], starts: &[usize]) -> Rejoins {
    let mut r = Rejoins::default();
    let mut last_list: Option<Instant> = None;
    for (i, s) in room.iter().enumerate() {
        let listed = s.listed.is_some();
        if starts.contains(&i) {
            last_list = s.at;
            continue;
        }
        r.rejoins += 1;
        r.bytes += s.bytes;
        if !listed {
            r.count_only += 1;
            continue;
        }
        r.lists += 1;
        let soon = REJOIN_WINDOW.saturating_sub(ARRIVAL_MARGIN);
        if let (Some(last), Some(at)) = (last_list, s.at)
            && at.saturating_duration_since(last) < soon
        {
            r.early_lists += 1;
        }
        last_list = s.at;
    }
    r
}

/// The index, among the room's snapshots, of each connection's first (`starts`: how many
/// snapshots of any room had come when each connection opened).
pub(super) fn room_starts(all: &[ops::Snapshot], starts: &[usize], room: &str) -> Vec<usize> {
    starts
        .iter()
        .filter_map(|&start| {
            (start..all.len())
                .find(|&i| all[i].topic == room)
                .map(|i| all[..i].iter().filter(|s| s.topic == room).count())
        })
        .collect()
}
