//! The measured window, shared between the coordinator and the load threads.
//!
//! The coordinator sets the window once the ramp is over ([`Control::set_window`]); each
//! thread opens and closes its own view of it on time ([`follow_window`]), recording its CPU
//! over exactly that span. A few progress counters ride along for the progress bar.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::sys;

/// "Not set yet" for the window offsets.
const UNSET: u64 = u64::MAX;

/// Shared between the coordinator and the threads: the window and a few progress counters.
#[derive(Debug)]
pub struct Control {
    /// Time zero: connection `k` is due at `base + k / connect_rate`.
    pub base: Instant,
    /// Window start and end as µs after `base`; [`UNSET`] until the ramp is over.
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
    /// Ask every thread to stop now.
    pub stop: AtomicBool,
    /// Connections upgraded so far (progress).
    pub opened: AtomicUsize,
    /// Connections failed so far (progress).
    pub failed: AtomicUsize,
    /// Data messages received inside the window so far (progress).
    pub messages: AtomicU64,
}

impl Control {
    /// A control block with time zero `base`.
    pub fn new(base: Instant) -> Self {
        Control {
            base,
            window_start_us: AtomicU64::new(UNSET),
            window_end_us: AtomicU64::new(UNSET),
            stop: AtomicBool::new(false),
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
        }
    }

    /// Sets the measured window.
    pub fn set_window(&self, start: Instant, end: Instant) {
        let us = |t: Instant| t.saturating_duration_since(self.base).as_micros() as u64;
        self.window_end_us.store(us(end), Ordering::SeqCst);
        self.window_start_us.store(us(start), Ordering::SeqCst);
    }

    /// The window, once set.
    pub fn window(&self) -> Option<(Instant, Instant)> {
        let start = self.window_start_us.load(Ordering::SeqCst);
        let end = self.window_end_us.load(Ordering::SeqCst);
        (start != UNSET && end != UNSET).then(|| {
            (
                self.base + Duration::from_micros(start),
                self.base + Duration::from_micros(end),
            )
        })
    }
}

/// Where this thread is relative to the window.
#[derive(Debug, Clone, Copy)]
pub enum WindowState {
    Before,
    Open { since: Instant, cpu_ns: u64 },
    Closed,
}

/// Opens and closes the window on time. Returns true once the window is over.
pub fn follow_window(
    control: &Control,
    state: &mut WindowState,
    stats: &mut Stats,
    now: Instant,
) -> bool {
    let Some((start, end)) = control.window() else {
        return false;
    };
    if let WindowState::Before = *state
        && now >= start
    {
        stats.begin_window();
        *state = WindowState::Open {
            since: now,
            cpu_ns: sys::thread_cpu_ns(),
        };
    }
    match *state {
        WindowState::Open { since, cpu_ns } if now >= end => {
            close_window(stats, since, cpu_ns, now);
            *state = WindowState::Closed;
            true
        }
        WindowState::Closed => true,
        _ => false,
    }
}

/// Records the window's length and this thread's CPU over it.
pub fn close_window(stats: &mut Stats, since: Instant, cpu_ns_at_start: u64, now: Instant) {
    stats.window_secs = now.duration_since(since).as_secs_f64();
    stats.cpu_ns = sys::thread_cpu_ns().saturating_sub(cpu_ns_at_start);
    stats.measuring = false;
    stats.settle_production();
}
