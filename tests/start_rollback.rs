//! A start that fails part-way leaves nothing running: every thread an earlier step started
//! (shards, mixer, providers) is stopped and joined before `start` returns its error.
//!
//! The failure is real: the process's descriptors are used up but for `spare` of them, so
//! the start fails at the first step that needs one more (a shard's or the acceptor's event
//! loop). Tried for every `spare` until a start succeeds, so the acceptor, the last step,
//! fails at least once after the shards, the mixer and the providers are running. In a test
//! binary of its own, because it lowers the open-file limit and counts the process's
//! threads.

use std::fs::File;
use std::time::{Duration, Instant};

use tickcast::config::ServerConfig;
use tickcast::server::Server;

/// The names of this process's threads that the server started (`tickcast-*`).
fn server_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let path = task.expect("task entry").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(path) {
            let name = name.trim().to_string();
            if name.starts_with("tickcast-") {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// Waits (bounded) until no server thread is left; returns those still there at the end.
fn server_threads_after_wait() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = server_threads();
        if names.is_empty() || Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens `/dev/null` until the open-file limit refuses, then gives back `spare` descriptors.
fn hold_all_descriptors_but(spare: usize) -> Vec<File> {
    let mut held = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        held.push(file);
    }
    held.truncate(held.len().saturating_sub(spare));
    held
}

#[test]
fn a_start_that_fails_late_leaves_no_thread_running() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).expect("setrlimit");
    assert_eq!(
        server_threads(),
        Vec::<String>::new(),
        "threads before the test"
    );
    let mut acceptor_failures = 0;
    for spare in 0..64 {
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            shards: 2,
            pin: false,
            ..ServerConfig::default()
        };
        let server = Server::bind(cfg).expect("bind");
        let held = hold_all_descriptors_but(spare);
        let result = server.start();
        drop(held);
        match result {
            Ok(running) => {
                running.shutdown();
                assert!(
                    acceptor_failures > 0,
                    "the start succeeded with {spare} spare descriptors before the acceptor \
                     ever failed: the test did not reach the last step"
                );
                assert_eq!(server_threads_after_wait(), Vec::<String>::new());
                return;
            }
            Err(e) => {
                let message = e.to_string();
                let left = server_threads_after_wait();
                assert!(
                    left.is_empty(),
                    "with {spare} spare descriptors the start failed ({message}) and left \
                     {left:?} running"
                );
                if message.contains("acceptor") {
                    acceptor_failures += 1;
                }
            }
        }
    }
    panic!("no start succeeded with up to 64 spare descriptors");
}
