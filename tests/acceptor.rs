//! Thread scheduling: `/metrics` says whether the acceptor runs at a real-time priority, and
//! that is what the kernel reports for the thread; the server serves at either priority.
//! Shards and the mixer run as `SCHED_BATCH` unless `--worker-sched normal` says otherwise.
//!
//! One test function: each server started here has threads of the same names, so they run
//! one after the other to be told apart.

mod common;

use common::*;
use tickcast::sched::WorkerSched;

/// Policies in `/proc/<pid>/task/<tid>/stat` (field 41, `policy`).
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_BATCH: u32 = 3;

/// The scheduling policy of this process's thread named `comm` (as the kernel truncates it
/// to 15 bytes), read from `/proc`, once the thread exists.
fn thread_policy(comm_name: &str) -> u32 {
    let mut found = None;
    wait_for(comm_name, || {
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim_end() != comm_name {
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
fn threads_run_under_the_policies_asked_for_and_serve_under_each() {
    for (rt_priority, workers) in [(10u8, WorkerSched::Batch), (0, WorkerSched::Normal)] {
        let mut cfg = test_config(1);
        cfg.acceptor_rt_priority = rt_priority;
        cfg.worker_sched = workers;
        let server = start(cfg);
        let addr = server.local_addr();
        // A client served end to end: the acceptor handed its socket over.
        let (mut ws, _) = connect_stream(addr, "ticks");
        let first = next_data(&mut ws);
        assert_eq!(first["topic"], "ticks");
        let policy = thread_policy("tickcast-accept");
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
        let expected = match workers {
            WorkerSched::Batch => SCHED_BATCH,
            WorkerSched::Normal => SCHED_OTHER,
        };
        for worker in ["tickcast-shard-", "tickcast-mixer"] {
            assert_eq!(
                thread_policy(worker),
                expected,
                "{worker} under {workers:?}"
            );
        }
        close_client(ws);
        server.shutdown();
    }
}
