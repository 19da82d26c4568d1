//! The acceptor's scheduling: `/metrics` says whether it runs at a real-time priority, and
//! that is what the kernel reports for the thread; the server serves at either priority.
//!
//! One test function: each server started here has a thread named `tickcast-accept`, so
//! they run one after the other to be told apart.

mod common;

use common::*;

/// `SCHED_FIFO` in `/proc/<pid>/task/<tid>/stat` (field 41, `policy`).
const SCHED_FIFO: u32 = 1;

/// The scheduling policy of this process's acceptor thread, read from `/proc`, once the
/// thread exists.
fn acceptor_policy() -> u32 {
    let mut found = None;
    wait_for("the acceptor thread", || {
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim_end() != "tickcast-accept" {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // Fields after the `(comm)` start at field 3; `policy` is field 41.
            let rest = &stat[stat.rfind(')').unwrap() + 1..];
            found = rest
                .split_whitespace()
                .nth(41 - 3)
                .map(|p| p.parse().unwrap());
        }
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn the_acceptor_reports_its_real_policy_and_serves_at_either() {
    for rt_priority in [10u8, 0] {
        let mut cfg = test_config(1);
        cfg.acceptor_rt_priority = rt_priority;
        let server = start(cfg);
        let addr = server.local_addr();
        // A client served end to end: the acceptor handed its socket over.
        let (mut ws, _) = connect_stream(addr, "ticks");
        let first = next_data(&mut ws);
        assert_eq!(first["topic"], "ticks");
        let policy = acceptor_policy();
        let gauge = metric(addr, "tickcast_acceptor_realtime", &[]);
        assert_eq!(
            gauge == 1.0,
            policy == SCHED_FIFO,
            "priority {rt_priority}: gauge {gauge}, kernel policy {policy}"
        );
        if rt_priority == 0 {
            assert_ne!(policy, SCHED_FIFO, "0 must leave real-time alone");
        }
        assert!(scrape(addr).has_family("tickcast_acceptor_pauses"));
        close_client(ws);
        server.shutdown();
    }
}
