//! What the operating system says about a process and the machine: resident memory and
//! threads (`/proc/<pid>/status`), CPU time (`/proc/<pid>/stat` for any process, `getrusage`
//! for this one or the calling thread), available memory (`/proc/meminfo`) and the load
//! average (`/proc/loadavg`), and this process's figures behind the `process_*` metrics
//! (`/proc/self/stat`, `/proc/self/fd`, `/proc/stat`, the open-file limit).
//!
//! Read once here so that the server's `telemetry` provider and `/metrics`, and the load
//! generator (which samples the server it measures and its own threads), parse the same
//! files the same way.
//! Every reader answers `None` where the figure does not exist (not Linux, no procfs, a
//! process that has gone, a line it cannot parse); each caller decides what that becomes (a
//! `null` field, an empty CSV cell, a zero).

use std::time::Duration;

/// Which process's `/proc` directory to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The calling process (`/proc/self`).
    Current,
    /// Another process, by id (`/proc/<pid>`).
    Pid(u32),
}

impl Process {
    fn file(self, name: &str) -> String {
        match self {
            Process::Current => format!("/proc/self/{name}"),
            Process::Pid(pid) => format!("/proc/{pid}/{name}"),
        }
    }
}

/// What `/proc/<pid>/status` tells about a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// `VmRSS`: resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// `Threads`: threads of the process.
    pub threads: Option<u64>,
}

/// What `/proc/meminfo` tells about the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemAvailable`, bytes.
    pub available_bytes: Option<u64>,
    /// `MemTotal`, bytes.
    pub total_bytes: Option<u64>,
}

/// Whose CPU time `getrusage` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Every thread of this process (`RUSAGE_SELF`).
    Process,
    /// The calling thread only (`RUSAGE_THREAD`).
    Thread,
}

/// Reads `process`'s status; `None` when the file cannot be read.
pub fn status(process: Process) -> Option<Status> {
    read(&process.file("status")).map(|t| parse_status(&t))
}

/// Reads the machine's memory figures; `None` when the file cannot be read.
pub fn meminfo() -> Option<MemInfo> {
    read("/proc/meminfo").map(|t| parse_meminfo(&t))
}

/// CPU time (utime + stime, every thread) `process` has used so far, from its `stat` file.
/// Its resolution is one clock tick (usually 10 ms).
pub fn stat_cpu_time(process: Process) -> Option<Duration> {
    let ticks = parse_stat_ticks(&read(&process.file("stat"))?)?;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec(),
    ))
}

/// CPU time (user + system) used so far by this process or the calling thread.
#[cfg(unix)]
pub fn cpu_time(who: Usage) -> Option<Duration> {
    let who = match who {
        Usage::Process => libc::RUSAGE_SELF,
        Usage::Thread => libc::RUSAGE_THREAD,
    };
    // SAFETY: `rusage` is a plain struct of integers, for which all-zero bytes are a valid
    // value; `getrusage` only writes into the struct it is given, which lives on this stack.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// CPU time is not read on this system.
#[cfg(not(unix))]
pub fn cpu_time(_who: Usage) -> Option<Duration> {
    None
}

/// The machine's 1-minute load average.
pub fn loadavg_1m() -> Option<f64> {
    read("/proc/loadavg")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's figures under the names Prometheus clients conventionally export them
/// (`process_cpu_seconds_total`, ...). Each is `None` where the system does not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFigures {
    /// User + system CPU time, seconds (clock-tick resolution).
    pub cpu_seconds: Option<f64>,
    /// Resident memory, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft open-file limit.
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The fields of a `/proc/<pid>/stat` line the `process_*` metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, clock ticks after boot.
    pub start_ticks: u64,
    /// Virtual memory size, bytes.
    pub vsize_bytes: u64,
    /// Resident set, pages.
    pub rss_pages: u64,
}

/// Reads this process's [`ProcessFigures`].
pub fn process_figures() -> ProcessFigures {
    ProcessFigures {
        open_fds: open_fds(),
        ..process_figures_but_fds()
    }
}

/// This process's [`ProcessFigures`] except the open descriptors (`None`), the one figure
/// whose cost grows with the connections.
pub fn process_figures_but_fds() -> ProcessFigures {
    let ticks = clock_ticks_per_sec() as f64;
    let stat = read("/proc/self/stat").and_then(|t| parse_stat_fields(&t));
    let boot = read("/proc/stat").and_then(|t| parse_btime(&t));
    ProcessFigures {
        cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / ticks),
        resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(page_size())),
        virtual_bytes: stat.map(|s| s.vsize_bytes),
        open_fds: None,
        max_fds: rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _hard)| soft),
        start_time_seconds: stat
            .zip(boot)
            .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
    }
}

/// Descriptors this process holds now: a walk of `/proc/self/fd`, one entry per descriptor
/// (so it costs in proportion to the connections).
pub fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as u64)
}

/// utime + stime (fields 14, 15), starttime (22), vsize (23) and rss (24) of a
/// `/proc/<pid>/stat` line, counted after the command name's last `)`.
pub fn parse_stat_fields(stat: &str) -> Option<StatFields> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After ")": state is field 3, so field N is at index N - 3.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let at = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatFields {
        cpu_ticks: at(14)?.checked_add(at(15)?)?,
        start_ticks: at(22)?,
        vsize_bytes: at(23)?,
        rss_pages: at(24)?,
    })
}

/// The boot time (`btime`, seconds since the Unix epoch) out of `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The size of a memory page, the unit of `stat`'s rss.
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Reads a small `/proc` file; `None` where it does not exist (not Linux, no procfs).
fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The value of a `Key:   123 kB` line, in bytes (or as is when it has no unit).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    let mut parts = rest.split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        None => Some(n),
        Some("kB") => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// The first value of each of `keys`, in that order, read from `Key: value` lines.
fn fields<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        for (slot, key) in out.iter_mut().zip(keys) {
            *slot = slot.or_else(|| field(line, key));
        }
    }
    out
}

/// Parses `VmRSS` and `Threads` out of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Status {
    let [rss_bytes, threads] = fields(text, ["VmRSS", "Threads"]);
    Status { rss_bytes, threads }
}

/// Parses `MemAvailable` and `MemTotal` out of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let [available_bytes, total_bytes] = fields(text, ["MemAvailable", "MemTotal"]);
    MemInfo {
        available_bytes,
        total_bytes,
    }
}

/// utime + stime (fields 14 and 15), in clock ticks, from a `/proc/<pid>/stat` line. The
/// command name may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttickcast\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  123456 kB\nVmRSS:\t    5120 kB\nRssAnon:\t    2048 kB\nThreads:\t9\n\
        SigQ:\t0/63432\n";
    const MEMINFO: &str = "MemTotal:        8000000 kB\nMemFree:          500000 kB\n\
        MemAvailable:    6000000 kB\nBuffers:           10000 kB\n";

    #[test]
    fn status_gives_rss_and_threads() {
        let s = parse_status(STATUS);
        assert_eq!(s.rss_bytes, Some(5120 * 1024));
        assert_eq!(s.threads, Some(9));
    }

    #[test]
    fn meminfo_gives_available_and_total() {
        let m = parse_meminfo(MEMINFO);
        assert_eq!(m.available_bytes, Some(6_000_000 * 1024));
        assert_eq!(m.total_bytes, Some(8_000_000 * 1024));
    }

    #[test]
    fn missing_or_garbled_fields_are_none() {
        assert_eq!(parse_status(""), Status::default());
        let garbled = "VmRSS:\tlots kB\nThreads:\t\nVmRSSX:\t1 kB\nMemAvailable: 1 MB\n";
        assert_eq!(parse_status(garbled), Status::default());
        assert_eq!(parse_meminfo(garbled), MemInfo::default());
        assert_eq!(field("Threads:", "Threads"), None);
        assert_eq!(field("Threads: 18446744073709551615 kB", "Threads"), None);
    }

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        let stat = "1234 (tick cast) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn stat_fields_and_boot_time_parse() {
        let stat = "1234 (tick cast) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat_fields(stat),
            Some(StatFields {
                cpu_ticks: 325,
                start_ticks: 12345,
                vsize_bytes: 1_000_000,
                rss_pages: 500,
            })
        );
        assert_eq!(parse_stat_fields("1 (x) S 1 2 3"), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_has_its_process_figures() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let f = process_figures();
        assert!(f.resident_bytes.unwrap() >= 4096);
        assert!(f.virtual_bytes.unwrap() >= f.resident_bytes.unwrap());
        // stdin, stdout, stderr at least, and the limit above them.
        let open = f.open_fds.unwrap();
        assert!(open >= 3 && f.max_fds.unwrap() >= open, "{f:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = f.start_time_seconds.unwrap();
        // Started before now (boot time is whole seconds) and after 2020.
        assert!(started > 1.5e9 && started <= now + 1.0, "{started} {now}");
        assert!(f.cpu_seconds.unwrap() >= 0.0);
    }

    /// Burns CPU on the calling thread until its CPU time reads above zero (the kernel may
    /// account it by clock ticks), for at most two seconds.
    fn spin_until_counted() -> Duration {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let used = cpu_time(Usage::Thread).unwrap();
            if used > Duration::ZERO || std::time::Instant::now() >= deadline {
                return used;
            }
            std::hint::black_box((0..100_000u64).fold(0, |a, b| a ^ b.wrapping_mul(31)));
        }
    }

    #[test]
    fn this_process_reads_plausible_figures() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // Resident memory: more than a page, less than the machine has.
        let own = status(Process::Current).unwrap();
        let rss = own.rss_bytes.unwrap();
        let mem = meminfo().unwrap();
        let total = mem.total_bytes.unwrap();
        assert!(rss >= 4096 && rss < total, "rss {rss} of {total}");
        assert!(mem.available_bytes.unwrap() <= total);
        assert!(own.threads.unwrap() >= 1);
        // The same process by its id reads the same way.
        let by_pid = status(Process::Pid(std::process::id())).unwrap();
        assert!(by_pid.rss_bytes.unwrap() >= 4096);
        // CPU time: the calling thread has used some, the whole process at least as much
        // (read after it), and a test process far less than an hour.
        let thread = spin_until_counted();
        let process = cpu_time(Usage::Process).unwrap();
        assert!(thread > Duration::ZERO, "{thread:?}");
        assert!(thread <= process, "{thread:?} {process:?}");
        assert!(process < Duration::from_secs(3600), "{process:?}");
        // `stat` counts the same time in clock ticks: never ahead of `getrusage` read after
        // it by more than rounding.
        let ticks = stat_cpu_time(Process::Current).unwrap();
        let later = cpu_time(Usage::Process).unwrap();
        assert!(
            ticks <= later + Duration::from_millis(100),
            "{ticks:?} {later:?}"
        );
        let load = loadavg_1m().unwrap();
        assert!((0.0..10_000.0).contains(&load), "{load}");
    }

    #[test]
    fn a_process_that_does_not_exist_reads_none() {
        // Above the largest pid Linux hands out (2^22).
        let gone = Process::Pid(u32::MAX);
        assert_eq!(status(gone), None);
        assert_eq!(stat_cpu_time(gone), None);
    }
}
