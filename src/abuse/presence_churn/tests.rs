//! Tests of the presence churn's pure parts: the op sequence, the token costs, the rejoin judgment.

use super::*;

#[test]
fn the_churn_alternates_and_the_big_op_comes_every_twentieth() {
    assert_eq!(Op::next(0, true, false), Op::Leave);
    assert_eq!(Op::next(1, false, false), Op::Rejoin);
    assert_eq!(Op::next(19, true, false), Op::BigSubscribe);
    assert_eq!(Op::next(39, true, true), Op::BigUnsubscribe);
    assert_eq!(Op::BigSubscribe.tokens(), 63.0);
    assert_eq!(Op::Rejoin.tokens(), 1.0);
    let mut t = Tally::new();
    client::count(&mut t, "leave");
    client::count(&mut t, "rejoin");
    client::count(&mut t, "join");
    client::count(&mut t, "big_subscribe");
    assert_eq!(expected_deltas(&t), 3);
}

#[test]
fn rejoins_are_sorted_against_the_window() {
    let t0 = Instant::now();
    let snap = |ms: u64, listed: bool| ops::Snapshot {
        topic: "room.pc.x".into(),
        count: 40,
        listed: listed.then_some(40),
        bytes: if listed { 1000 } else { 80 },
        at: Some(t0 + Duration::from_millis(ms)),
    };
    let all = [
        snap(0, true),
        snap(10, false),
        snap(20, false),
        snap(1010, true),
        snap(1020, true),
        snap(1500, true),
    ];
    let room: Vec<&ops::Snapshot> = all.iter().collect();
    let r = rejoins(&room, &[0, 5]);
    assert_eq!(
        r,
        Rejoins {
            rejoins: 4,
            count_only: 2,
            lists: 2,
            early_lists: 1,
            bytes: 2160,
        }
    );
    let with_others = [
        all[0].clone(),
        ops::Snapshot {
            topic: "room.pc-small.1".into(),
            ..all[1].clone()
        },
        all[1].clone(),
    ];
    assert_eq!(room_starts(&with_others, &[0, 1], "room.pc.x"), vec![0, 1]);
}

#[test]
fn a_connection_holds_the_room_and_the_small_ones() {
    let d = crate::config::ServerConfig::default();
    assert_eq!(SMALL_ROOMS + 1, d.max_topics_per_conn);
    const { assert!(BACK_OFF_AFTER < crate::ratelimit::STRIKES_BEFORE_CLOSE) };
    assert!(Op::BigSubscribe.tokens() <= f64::from(d.publish_burst));
}
