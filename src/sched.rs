//! Scheduling of the acceptor thread, the one thread whose wake-up latency a client sees.
//!
//! A shard in a long flush pass (10,000 writes take ~70 ms) holds its core for whole
//! scheduler slices, and a normal-priority acceptor woken by a new connection on that core
//! waits for the slice to end: a tcpdump of SYN, GET and 101 at 10,000 clients showed the
//! request waiting a p99 of ~3 ms before `accept`, against ~0.1 ms at `SCHED_FIFO`. So the
//! acceptor asks for a real-time priority when the process may have one (root,
//! `CAP_SYS_NICE` or `RLIMIT_RTPRIO`), and otherwise for a short fair-scheduler slice (Linux
//! 6.12+, unprivileged), which lets it preempt sooner; failing both it runs as it is.
//!
//! A real-time thread that never blocks starves the shard on its core, so [`FloodGuard`]
//! bounds the acceptor's share under a connection flood: after a burst of accepts it sleeps
//! as long as the burst took, holding it to about half a core.
//!
//! Shards and the mixer run as `SCHED_BATCH` by default ([`WorkerSched`]): a thread of that
//! policy that is woken does not preempt the one running on its core, it runs when that one
//! blocks or its slice ends. Every client publish crosses from a shard to the mixer and back,
//! and where they share a core each wake-up otherwise switches threads at once: with
//! publishes arriving evenly (1,000 rooms of 2, 50,000 publishes/s, one core) the shard
//! blocked and the mixer was preempted about 0.7 times per publish each, and the server
//! spent 70-73 % of the core; as `SCHED_BATCH` 0.2-0.3 and 0.1-0.25 times, 58-60 %, p99
//! unchanged (`results/2026-12-03-vm-uws/switches.txt`). Neither thread needs to preempt:
//! what wakes a shard waits in a socket buffer, what wakes the mixer in its queue.

use std::time::Duration;

/// The fair-scheduler slice asked for when real-time priority is refused.
pub const SHORT_SLICE: Duration = Duration::from_micros(100);

/// How the calling thread ended up scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sched {
    /// `SCHED_FIFO` at this priority.
    Fifo(u8),
    /// `SCHED_OTHER` with [`SHORT_SLICE`] as its slice.
    ShortSlice,
    /// Unchanged: the kernel refused both (or real-time was not asked for and the kernel has
    /// no custom slices).
    Normal,
}

/// Raises the calling thread: `SCHED_FIFO` at `rt_priority` (1-99; 0 = do not ask), else a
/// short slice. Never fails; the result says what took effect.
pub fn raise_current_thread(rt_priority: u8) -> Sched {
    let priority = rt_priority.min(99);
    if priority > 0 && set_policy(libc::SCHED_FIFO, i32::from(priority)) {
        return Sched::Fifo(priority);
    }
    if set_short_slice() {
        Sched::ShortSlice
    } else {
        Sched::Normal
    }
}

/// How shard and mixer threads are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerSched {
    /// `SCHED_BATCH`: woken threads wait for the running one instead of preempting it.
    #[default]
    Batch,
    /// `SCHED_OTHER`, as the process started (every wake-up may preempt).
    Normal,
}

/// Puts the calling thread (`what`: "shard", "mixer") under `policy`; a refusal is logged
/// and the thread runs as it is.
pub fn apply_worker_policy(policy: WorkerSched, what: &str) {
    if !set_worker_policy(policy) {
        log::warn!(
            "{what}: could not set {policy:?} scheduling: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Puts the calling thread under `policy`. False (and nothing changed) when the kernel
/// refuses, which it does not for `SCHED_BATCH` at nice 0 (it needs no privilege).
pub fn set_worker_policy(policy: WorkerSched) -> bool {
    match policy {
        WorkerSched::Batch => set_policy(libc::SCHED_BATCH, 0),
        WorkerSched::Normal => true,
    }
}

/// `sched_setscheduler(2)` on the calling thread; false when the kernel refuses.
fn set_policy(policy: i32, priority: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// `struct sched_attr` of `sched_setattr(2)` (its first, 56-byte version).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Asks for `SCHED_OTHER` with [`SHORT_SLICE`] as the slice (`sched_runtime`, honoured by
/// the EEVDF scheduler since Linux 6.12; older kernels refuse or ignore it).
fn set_short_slice() -> bool {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: SHORT_SLICE.as_nanos() as u64,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: tid 0 is the calling thread; `attr` is a valid, sized `sched_attr` that
    // outlives the call.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0 }
}

/// Accepts after which the guard looks at how long the burst took.
pub const FLOOD_BURST: usize = 64;
/// Longest pause the guard asks for.
pub const MAX_PAUSE: Duration = Duration::from_millis(10);

/// Holds a real-time acceptor to about half a core under a connection flood: a burst of
/// [`FLOOD_BURST`] accepts in a row is followed by a pause as long as the burst took (at
/// most [`MAX_PAUSE`]). Time is passed in, so the rule is testable.
#[derive(Debug)]
pub struct FloodGuard {
    enabled: bool,
    accepted: usize,
    burst_start: Option<std::time::Instant>,
}

impl FloodGuard {
    /// A guard that pauses only when `enabled` (the acceptor is real-time).
    pub fn new(enabled: bool) -> Self {
        FloodGuard {
            enabled,
            accepted: 0,
            burst_start: None,
        }
    }

    /// One socket accepted at `now`. Returns the pause to take before accepting more.
    pub fn on_accept(&mut self, now: std::time::Instant) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let start = *self.burst_start.get_or_insert(now);
        self.accepted += 1;
        if self.accepted < FLOOD_BURST {
            return None;
        }
        self.accepted = 0;
        self.burst_start = None;
        Some(
            now.duration_since(start)
                .clamp(Duration::from_micros(50), MAX_PAUSE),
        )
    }

    /// The backlog is empty: the next accept starts a new burst.
    pub fn on_idle(&mut self) {
        self.accepted = 0;
        self.burst_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_result_is_what_the_kernel_reports_for_the_thread() {
        for asked in [0u8, 10] {
            let (sched, policy) = std::thread::spawn(move || {
                let sched = raise_current_thread(asked);
                // SAFETY: pid 0 is the calling thread.
                (sched, unsafe { libc::sched_getscheduler(0) })
            })
            .join()
            .unwrap();
            match sched {
                Sched::Fifo(p) => {
                    assert_eq!(p, asked);
                    assert_eq!(policy, libc::SCHED_FIFO);
                }
                Sched::ShortSlice | Sched::Normal => assert_eq!(policy, libc::SCHED_OTHER),
            }
            if asked == 0 {
                assert!(!matches!(sched, Sched::Fifo(_)), "0 must not ask for FIFO");
            }
        }
    }

    #[test]
    fn a_flood_pauses_as_long_as_its_burst_took() {
        let mut guard = FloodGuard::new(true);
        let t0 = Instant::now();
        for i in 0..FLOOD_BURST - 1 {
            assert_eq!(
                guard.on_accept(t0 + Duration::from_micros(i as u64 * 10)),
                None
            );
        }
        let end = t0 + Duration::from_micros(2000);
        assert_eq!(guard.on_accept(end), Some(Duration::from_micros(2000)));
        // The next burst starts afresh and a very long one is capped.
        guard.on_accept(end);
        for _ in 0..FLOOD_BURST - 2 {
            assert_eq!(guard.on_accept(end), None);
        }
        assert_eq!(
            guard.on_accept(end + Duration::from_secs(1)),
            Some(MAX_PAUSE)
        );
    }

    #[test]
    fn an_emptied_backlog_starts_a_new_burst_and_normal_priority_never_pauses() {
        let mut guard = FloodGuard::new(true);
        let t0 = Instant::now();
        for _ in 0..FLOOD_BURST - 1 {
            guard.on_accept(t0);
        }
        guard.on_idle();
        assert_eq!(guard.on_accept(t0), None);
        let mut normal = FloodGuard::new(false);
        for _ in 0..10 * FLOOD_BURST {
            assert_eq!(normal.on_accept(t0), None);
        }
    }
}
