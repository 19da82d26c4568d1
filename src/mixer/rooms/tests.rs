//! Tests of room membership and presence: lists, deltas, counts, other nodes' members, rejoins.

use super::*;

fn conn(n: usize) -> ConnRef {
    ConnRef {
        shard: 0,
        key: crate::messages::ConnKey {
            token: n,
            id: n as u64,
        },
    }
}

fn json(f: &FrameBytes) -> serde_json::Value {
    serde_json::from_slice(&f[f.len() - payload_len(f)..]).unwrap()
}

fn payload_len(f: &FrameBytes) -> usize {
    match f[1] & 0x7f {
        126 => u16::from_be_bytes([f[2], f[3]]) as usize,
        127 => unreachable!("test frames are small"),
        n => n as usize,
    }
}

#[test]
fn join_leave_rename_who() {
    let now = Instant::now();
    let mut rooms = Rooms::new(10, now);
    let room: Arc<str> = Arc::from("room.a");
    let out = rooms.join(&room, conn(1), Arc::from("alice"), None, now);
    assert_eq!(
        json(&out.to_conn.unwrap().1)["members"][0]["client_id"],
        "alice"
    );
    assert_eq!(json(&out.to_room[0])["event"], "join");
    let out = rooms.join(&room, conn(2), Arc::from("bob"), None, now);
    assert_eq!(json(&out.to_conn.unwrap().1)["count"], 2);
    let renamed = rooms.rename(conn(2), &Arc::from("bobby"), std::slice::from_ref(&room));
    assert_eq!(json(&renamed[0].1)["nick"], "bobby");
    assert_eq!(json(&rooms.who("room.a"))["members"][1]["nick"], "bobby");
    let out = rooms.leave("room.a", conn(1));
    let v = json(&out.to_room[0]);
    assert_eq!(
        (v["event"].as_str(), v["count"].as_u64()),
        (Some("leave"), Some(1))
    );
    assert!(!out.emptied);
    assert!(rooms.leave("room.a", conn(2)).emptied);
    assert_eq!(rooms.count("room.a"), 0);
}

fn change(version: u64, event: PresenceEvent, member: &str, client_id: &str) -> RemoteChange {
    RemoteChange {
        version,
        event,
        member: Arc::from(member),
        client_id: Arc::from(client_id),
        nick: None,
    }
}

#[test]
fn other_nodes_members_join_the_view_in_order_once() {
    let now = Instant::now();
    let mut rooms = Rooms::new(10, now);
    let room: Arc<str> = Arc::from("room.c");
    let out = rooms.join(&room, conn(1), Arc::from("alice"), None, now);
    assert!(out.created, "the first member here asks for the others");
    // Changes that come while the members are read wait; the older one is in the read.
    assert!(
        rooms
            .remote("room.c", change(5, PresenceEvent::Join, "b/0/1/1", "bob"))
            .to_room
            .is_empty()
    );
    assert!(
        rooms
            .remote("room.c", change(6, PresenceEvent::Join, "b/0/2/2", "carol"))
            .to_room
            .is_empty()
    );
    let read = vec![RemoteMember {
        member: Arc::from("b/0/1/1"),
        client_id: Arc::from("bob"),
        nick: None,
    }];
    let out = rooms.loaded("room.c", 5, read);
    let v = json(&out.to_room[0]);
    assert_eq!(
        (v["event"].as_str(), v["count"].as_u64()),
        (Some("snapshot"), Some(3))
    );
    assert_eq!(rooms.count("room.c"), 3);
    // From now on in order, once.
    assert!(
        rooms
            .remote("room.c", change(6, PresenceEvent::Join, "b/0/2/2", "carol"))
            .to_room
            .is_empty()
    );
    let out = rooms.remote("room.c", change(7, PresenceEvent::Leave, "b/0/1/1", ""));
    let v = json(&out.to_room[0]);
    assert_eq!(
        (v["event"].as_str(), v["client_id"].as_str()),
        (Some("leave"), Some("bob"))
    );
    assert_eq!(json(&rooms.who("room.c"))["count"], 2);
    // The last member here leaving takes the room, other nodes' members with it.
    let out = rooms.leave("room.c", conn(1));
    assert!(out.emptied && out.to_room.is_empty());
    assert_eq!(rooms.count("room.c"), 0);
    assert!(
        rooms
            .remote("room.c", change(8, PresenceEvent::Join, "b/0/3/3", "dan"))
            .to_room
            .is_empty()
    );
    assert_eq!(
        rooms.count("room.c"),
        0,
        "a room not followed here stays away"
    );
}

#[test]
fn large_rooms_send_counts_only_and_throttled() {
    let now = Instant::now();
    let mut rooms = Rooms::new(2, now);
    let room: Arc<str> = Arc::from("big");
    for n in 0..5 {
        let out = rooms.join(&room, conn(n), Arc::from(format!("c{n}")), None, now);
        if n >= 2 {
            assert!(out.to_room.is_empty(), "no deltas above the list max");
            assert_eq!(json(&out.to_conn.unwrap().1)["truncated"], true);
        }
    }
    assert!(rooms.tick(now).is_empty(), "not due yet");
    let counts = rooms.tick(now + COUNT_EVERY);
    assert_eq!(counts.len(), 1);
    assert_eq!(json(&counts[0].1)["count"], 5);
    assert!(
        rooms.tick(now + COUNT_EVERY * 2).is_empty(),
        "unchanged: nothing sent"
    );
    // Shrinking back to the list limit sends one fresh snapshot to the room.
    rooms.leave("big", conn(4));
    rooms.leave("big", conn(3));
    let out = rooms.leave("big", conn(2));
    let v = json(&out.to_room[0]);
    assert_eq!(
        (v["event"].as_str(), v["count"].as_u64()),
        (Some("snapshot"), Some(2))
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_rejoin_within_a_second_gets_the_count_not_the_list() {
    let now = Instant::now();
    let mut rooms = Rooms::new(1000, now);
    let room: Arc<str> = Arc::from("room.big");
    let members = listed::CHEAP_LIST + 8;
    for n in 0..members {
        rooms.join(&room, conn(n), Arc::from(format!("c{n}")), None, now);
    }
    let churner = conn(members);
    let listed_members = |out: &Outcome| {
        let (to, frame) = out.to_conn.as_ref().expect("a snapshot");
        assert_eq!(*to, churner);
        let v = json(frame);
        assert_eq!(v["event"], "snapshot");
        assert_eq!(v["count"], members as u64 + 1);
        v["members"].as_array().map(Vec::len)
    };
    let first = rooms.join(&room, churner, Arc::from("x"), None, now);
    assert_eq!(listed_members(&first), Some(members + 1));
    // Leave and rejoin within the second: the count, marked truncated; the room still gets
    // its deltas.
    let left = rooms.leave("room.big", churner);
    assert_eq!(left.to_room.len(), 1);
    let soon = now + Duration::from_millis(400);
    let again = rooms.join(&room, churner, Arc::from("x"), None, soon);
    assert_eq!(listed_members(&again), None);
    assert_eq!(json(&again.to_conn.as_ref().unwrap().1)["truncated"], true);
    assert_eq!(again.to_room.len(), 1, "the join delta still goes out");
    // A second after the full list, the list again.
    rooms.leave("room.big", churner);
    let later = now + listed::REJOIN_WINDOW;
    let third = rooms.join(&room, churner, Arc::from("x"), None, later);
    assert_eq!(listed_members(&third), Some(members + 1));
    // A newcomer is never held back by someone else's rejoin.
    let fresh = rooms.join(&room, conn(999), Arc::from("y"), None, soon);
    assert_eq!(fresh.to_conn.as_ref().unwrap().0, conn(999));
    assert!(json(&fresh.to_conn.unwrap().1)["members"].is_array());
}
