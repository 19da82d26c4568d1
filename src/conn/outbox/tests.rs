//! Tests of the outbox: one vectored write per turn, partial writes, the byte budget, runs,
//! dropping what was not started, and giving memory back when load falls.

use super::*;

/// A writer that accepts at most `per_call` bytes per call and then `WouldBlock`s once
/// `capacity` bytes are in.
struct Throttled {
    got: Vec<u8>,
    per_call: usize,
    capacity: usize,
    calls: usize,
}

impl Write for Throttled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let room = self.capacity - self.got.len();
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = self.per_call.min(room);
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(left);
            self.got.extend_from_slice(&b[..take]);
            left -= take;
            n += take;
            if left == 0 {
                break;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn frame(byte: u8, len: usize) -> FrameBytes {
    Arc::from(vec![byte; len])
}

#[test]
fn one_vectored_write_carries_every_queued_frame() {
    let mut ob = Outbox::default();
    for i in 0..100 {
        ob.push(frame(i, 50), 1 + i as u64);
    }
    let mut w = Throttled {
        got: vec![],
        per_call: usize::MAX,
        capacity: usize::MAX,
        calls: 0,
    };
    let mut done = vec![];
    let (st, n) = ob
        .write_to(&mut w, 1 << 20, |f| done.extend_from_slice(f.stamps()))
        .unwrap();
    assert_eq!((st, n, w.calls), (WriteStatus::Drained, 5000, 1));
    assert_eq!(done, (1..=100).collect::<Vec<_>>());
    assert_eq!(ob.cost(), 0);
    assert!(ob.is_empty());
}

#[test]
fn partial_writes_resume_at_the_right_offset() {
    let mut ob = Outbox::default();
    let a: FrameBytes = Arc::from(&b"aaaaaaa"[..]);
    let b: FrameBytes = Arc::from(&b"bbbbb"[..]);
    ob.push(a, 0);
    ob.push(b, 7);
    let mut w = Throttled {
        got: vec![],
        per_call: 3,
        capacity: 9,
        calls: 0,
    };
    let mut done = vec![];
    let (st, n) = ob
        .write_to(&mut w, 1 << 20, |f| {
            done.push((f.bytes().len(), f.stamps().to_vec()))
        })
        .unwrap();
    assert_eq!((st, n), (WriteStatus::Blocked, 9));
    assert_eq!(done, vec![(7, vec![])]);
    assert_eq!(ob.cost(), 3 + ENTRY_OVERHEAD);
    w.capacity = 100;
    let (st, _) = ob
        .write_to(&mut w, 1 << 20, |f| {
            done.push((f.bytes().len(), f.stamps().to_vec()))
        })
        .unwrap();
    assert_eq!(st, WriteStatus::Drained);
    assert_eq!(w.got, b"aaaaaaabbbbb");
    assert_eq!(done, vec![(7, vec![]), (5, vec![7])]);
}

#[test]
fn budget_stops_a_fast_link() {
    let mut ob = Outbox::default();
    for _ in 0..10 {
        ob.push(frame(1, 1000), 1);
    }
    let mut w = Throttled {
        got: vec![],
        per_call: usize::MAX,
        capacity: usize::MAX,
        calls: 0,
    };
    let (st, n) = ob.write_to(&mut w, 3000, |_| {}).unwrap();
    assert_eq!(st, WriteStatus::BudgetSpent);
    assert_eq!(n, 3000);
    assert_eq!(ob.len(), 7);
}

#[test]
fn a_run_is_one_entry_written_like_its_frames_and_reports_every_stamp() {
    let frames = [frame(1, 30), frame(2, 40), frame(3, 50), frame(5, 20)];
    // The last one is unsequenced (presence): written, but not a delivery to count.
    let run = FrameRun::new(frames.iter().zip([11, 12, 13, 0]).map(|(f, s)| (&f[..], s)));
    let mut ob = Outbox::default();
    ob.push(frame(0, 5), 0);
    ob.push_entry(OutFrame::Run(Arc::new(run)));
    ob.push(frame(4, 10), 14);
    assert_eq!(ob.len(), 3);
    assert_eq!(ob.cost(), 5 + 140 + 10 + 3 * ENTRY_OVERHEAD);
    let mut w = Throttled {
        got: vec![],
        per_call: 64,
        capacity: usize::MAX,
        calls: 0,
    };
    let mut done = vec![];
    let (st, n) = ob
        .write_to(&mut w, 1 << 20, |f| done.push(f.stamps().to_vec()))
        .unwrap();
    assert_eq!((st, n), (WriteStatus::Drained, 155));
    let mut want = vec![0u8; 5];
    for f in &frames {
        want.extend_from_slice(f);
    }
    want.extend_from_slice(&[4; 10]);
    assert_eq!(w.got, want, "the same bytes as frame by frame");
    assert_eq!(done, vec![vec![], vec![11, 12, 13], vec![14]]);
    assert_eq!(ob.cost(), 0);
}

#[test]
fn dropping_unstarted_runs_counts_their_frames() {
    let run = |n: usize| {
        let f = frame(7, 10);
        OutFrame::Run(Arc::new(FrameRun::new((0..n).map(|i| (&f[..], i as u64)))))
    };
    let mut ob = Outbox::default();
    ob.push_entry(run(3));
    ob.push_entry(run(4));
    ob.push(frame(1, 10), 1);
    let mut w = Throttled {
        got: vec![],
        per_call: 12,
        capacity: 12,
        calls: 0,
    };
    ob.write_to(&mut w, 1 << 20, |_| {}).unwrap();
    // The first run is partly written and stays whole; the rest is 5 frames (an
    // unstamped frame counts as a frame too).
    assert_eq!(ob.drop_unstarted(), 5);
    assert_eq!(ob.len(), 1);
    assert_eq!(ob.cost(), 30 - 12 + ENTRY_OVERHEAD);
}

#[test]
fn cost_counts_bytes_and_entries() {
    let mut ob = Outbox::default();
    assert!(!ob.would_exceed(100, 100 + ENTRY_OVERHEAD));
    ob.push(frame(0, 100), 0);
    assert_eq!(ob.cost(), 100 + ENTRY_OVERHEAD);
    assert!(ob.would_exceed(1, 100 + ENTRY_OVERHEAD));
}

#[test]
fn a_grown_deque_is_kept_under_steady_load_and_given_back_when_load_falls() {
    let mut ob = Outbox::default();
    let mut sink = Throttled {
        got: vec![],
        per_call: usize::MAX,
        capacity: usize::MAX,
        calls: 0,
    };
    let mut burst = |ob: &mut Outbox, frames: usize| {
        for i in 0..frames {
            ob.push(frame(i as u8, 20), 1);
        }
        let (status, _) = ob.write_to(&mut sink, usize::MAX, |_| {}).unwrap();
        assert_eq!(status, WriteStatus::Drained);
    };
    burst(&mut ob, 300);
    let grown = ob.frames.capacity();
    assert!(grown >= 300);
    for _ in 0..5 {
        burst(&mut ob, 250);
        assert_eq!(ob.frames.capacity(), grown, "steady load keeps the deque");
    }
    burst(&mut ob, 10);
    assert_eq!(
        ob.frames.capacity(),
        0,
        "a small batch gives the deque back"
    );
    burst(&mut ob, 10);
    assert!(ob.frames.capacity() <= 64, "small deques are kept");
    ob.release_if_grown();
    assert!(
        ob.frames.capacity() > 0,
        "the heartbeat leaves small deques alone"
    );
    // A big batch written over several calls (the socket was full) still counts as big.
    for i in 0..300 {
        ob.push(frame(i as u8, 20), 1);
    }
    let mut slow = Throttled {
        got: vec![],
        per_call: 20 * 290,
        capacity: 20 * 290,
        calls: 0,
    };
    let (status, _) = ob.write_to(&mut slow, usize::MAX, |_| {}).unwrap();
    assert_eq!(status, WriteStatus::Blocked);
    slow.capacity = usize::MAX;
    let (status, _) = ob.write_to(&mut slow, usize::MAX, |_| {}).unwrap();
    assert_eq!(status, WriteStatus::Drained);
    assert!(
        ob.frames.capacity() >= 300,
        "kept after the tail of a big batch"
    );
    // Then the connection goes quiet: its heartbeat gives the deque back.
    ob.release_if_grown();
    assert_eq!(ob.frames.capacity(), 0);
}

#[test]
fn drop_unstarted_keeps_a_partly_written_head() {
    let mut ob = Outbox::default();
    for _ in 0..5 {
        ob.push(frame(9, 10), 1);
    }
    let mut w = Throttled {
        got: vec![],
        per_call: 4,
        capacity: 4,
        calls: 0,
    };
    ob.write_to(&mut w, 1 << 20, |_| {}).unwrap();
    assert_eq!(ob.drop_unstarted(), 4);
    assert_eq!(ob.len(), 1);
    assert_eq!(ob.cost(), 6 + ENTRY_OVERHEAD);
    let mut fresh = Outbox::default();
    fresh.push(frame(1, 10), 0);
    assert_eq!(fresh.drop_unstarted(), 1);
    assert_eq!(fresh.cost(), 0);
}

#[test]
fn write_errors_surface() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut ob = Outbox::default();
    ob.push(frame(0, 3), 0);
    assert!(ob.write_to(&mut Broken, 100, |_| {}).is_err());
}
