//! The schema of `raw.csv`: one [`Row`] per measured point, written by `tickcast load --csv`
//! and read back by `tickcast report`.
//!
//! One struct is the single source of truth: serde names the columns, [`COLUMNS`] documents
//! them (printed by `tickcast report --schema` into each results README), and a test checks
//! that the two agree. Values the load generator could not measure (no `--server-pid`, a
//! server without `/metrics`) are empty cells, never made-up zeros.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One measured point of a sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// When the point finished, seconds since the Unix epoch.
    pub unix_time: u64,
    /// What was measured: `tickcast` or `baseline` (free text for other servers).
    pub mode: String,
    /// Server shard threads (1 = the single hub; the baseline is one thread; 0 = unknown:
    /// not given to the load generator, and not shown by the server's `/metrics`).
    pub shards: u32,
    /// Whether shard threads were pinned to cores.
    pub pin: bool,
    /// Mixer linger in µs (0 = wake shards at once).
    pub linger_us: u64,
    /// Requested size of each message's `data` object (0 = natural, about 100 bytes).
    pub payload_bytes: u64,
    /// Provider threads feeding the server.
    pub providers: u32,
    /// Messages per second the server was asked to publish, all providers together.
    pub offered_rate: f64,
    /// Provider interval in µs when interval-paced (0 when rate-paced).
    pub interval_us: u64,
    /// Connections requested.
    pub clients: u64,
    /// How CPUs were split between server and load generator (e.g. `server:0 load:1`).
    pub cpu_split: String,
    /// 1-minute load average of the machine when the point started.
    pub loadavg_1m: f64,
    /// Load generator threads (event loops).
    pub load_threads: u32,
    /// Connections that completed the WebSocket handshake.
    pub connected: u64,
    /// Connections that failed to connect or handshake.
    pub connect_failures: u64,
    /// Failures by reason, `reason=count` joined with `;`.
    pub failure_reasons: String,
    /// Handshake latency (TCP connect started -> 101 received), median, µs.
    pub handshake_p50_us: u64,
    /// Handshake latency, 99th percentile, µs.
    pub handshake_p99_us: u64,
    /// Handshake latency, maximum, µs.
    pub handshake_max_us: u64,
    /// The server's own handshake latency (accepted -> 101 queued), p99 over the run, µs,
    /// from tickcast's `/metrics`; empty when not scraped (and in files older than it).
    #[serde(default)]
    pub server_handshake_p99_us: Option<u64>,
    /// Closes received or observed, `code=count` joined with `;` (1006 = no close frame).
    pub closes: String,
    /// Length of the measured window in seconds.
    pub window_s: f64,
    /// Data messages (with `seq` and `ts`) received by all clients in the window.
    pub messages: u64,
    /// Bytes received by all clients in the window (frames and headers).
    pub bytes: u64,
    /// Data messages received per second, all clients together (deliveries/s).
    pub delivered_per_s: f64,
    /// Messages per second the server sequenced: the seqs from the first to the last one a
    /// load thread's clients received in its window, per topic, over the window (0 when
    /// nothing was seen).
    pub produced_per_s: f64,
    /// Deliveries expected in the window: the larger of received + seq gaps and
    /// `(offered_rate x window_s - 1) x connected`, or without an offered rate what the
    /// server sequenced in each load thread's window less one per topic, times its clients
    /// (one message per client may be in flight at a window edge).
    pub expected: f64,
    /// `messages / expected`.
    pub delivery_ratio: f64,
    /// Messages missing from the seq sequence of each topic, summed over clients.
    pub seq_gaps: u64,
    /// End-to-end latency (receive time - the message's `ts`), median, µs.
    pub lat_p50_us: u64,
    /// End-to-end latency, 90th percentile, µs.
    pub lat_p90_us: u64,
    /// End-to-end latency, 99th percentile, µs.
    pub lat_p99_us: u64,
    /// End-to-end latency, 99.9th percentile, µs.
    pub lat_p999_us: u64,
    /// End-to-end latency, maximum, µs.
    pub lat_max_us: u64,
    /// Connections that published (`--publishers`).
    pub publishers: u64,
    /// Publish operations sent in the window.
    pub published: u64,
    /// Error frames (`"type":"error"`) received in the window.
    pub error_frames: u64,
    /// Publisher-to-subscriber latency p50 (receive time minus the `sent_us` a publisher
    /// embedded), µs; empty without publishers. Absent in files written before it existed.
    #[serde(default)]
    pub pub_lat_p50_us: Option<u64>,
    /// The same, p99.
    #[serde(default)]
    pub pub_lat_p99_us: Option<u64>,
    /// Server CPU (utime + stime, all threads) over the window, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU ns per delivered message over the window.
    pub server_cpu_ns_per_msg: Option<f64>,
    /// Server VmRSS before any client connected, KiB.
    pub server_rss_start_kib: Option<u64>,
    /// Server VmRSS once every client had connected, KiB.
    pub server_rss_connected_kib: Option<u64>,
    /// Server VmRSS at the end of the window, KiB.
    pub server_rss_end_kib: Option<u64>,
    /// `(rss_connected - rss_start) / connected`, KiB per connection.
    pub rss_kib_per_conn: Option<f64>,
    /// Server drops over the window by reason (from `/metrics`), `reason=count;...`.
    pub server_drops: String,
    /// Sum of the server drops over the window.
    pub server_drops_total: Option<u64>,
    /// Load generator CPU over the window, % of the CPUs it may run on.
    pub load_cpu_pct: f64,
    /// The busiest load generator thread's CPU over the window, % of one core.
    pub load_thread_max_cpu_pct: f64,
    /// The load generator was at 90 % CPU or more: if the point failed, the client may be why.
    pub client_bound: bool,
    /// Delivery >= 99 %, p99 <= 100 ms and every client connected.
    pub sustainable: bool,
}

/// Every column with its meaning, in file order (`tickcast report --schema`).
pub const COLUMNS: &[(&str, &str)] = &[
    (
        "unix_time",
        "when the point finished (s since the Unix epoch)",
    ),
    ("mode", "`tickcast` or `baseline`"),
    (
        "shards",
        "server shard threads (1 = single hub; the baseline is one thread; 0 = unknown, \
         labelled `shards=?`)",
    ),
    ("pin", "shard threads pinned to cores"),
    ("linger_us", "mixer linger (µs)"),
    (
        "payload_bytes",
        "requested `data` size (0 = natural, ~100 bytes)",
    ),
    ("providers", "provider threads"),
    (
        "offered_rate",
        "messages/s the server was asked to publish (all providers)",
    ),
    (
        "interval_us",
        "provider interval when interval-paced (µs, 0 = rate-paced)",
    ),
    ("clients", "connections requested"),
    (
        "cpu_split",
        "CPUs of the server and of the load generator (taskset)",
    ),
    (
        "loadavg_1m",
        "machine 1-minute load average when the point started",
    ),
    ("load_threads", "load generator event-loop threads"),
    ("connected", "connections that completed the handshake"),
    (
        "connect_failures",
        "connections that failed to connect or handshake",
    ),
    ("failure_reasons", "failures by reason (`reason=count;...`)"),
    (
        "handshake_p50_us",
        "handshake latency, TCP connect -> 101, median (µs)",
    ),
    ("handshake_p99_us", "handshake latency, p99 (µs)"),
    ("handshake_max_us", "handshake latency, max (µs)"),
    (
        "server_handshake_p99_us",
        "the server's part: accept -> 101 queued, p99 over the run (µs; tickcast `/metrics`)",
    ),
    (
        "closes",
        "closes by code (`code=count;...`, 1006 = no close frame)",
    ),
    ("window_s", "measured window (s)"),
    (
        "messages",
        "data messages received by all clients in the window",
    ),
    ("bytes", "bytes received by all clients in the window"),
    ("delivered_per_s", "deliveries per second (all clients)"),
    (
        "produced_per_s",
        "messages/s the server sequenced in the window (from the seqs the clients received)",
    ),
    (
        "expected",
        "deliveries expected: max(messages + seq_gaps, (offered_rate x window_s - 1) x \
         connected), or without offered_rate max(messages + seq_gaps, (seqs sequenced in the \
         window - 1) x connected)",
    ),
    ("delivery_ratio", "messages / expected"),
    (
        "seq_gaps",
        "messages missing from each topic's seq sequence, summed over clients",
    ),
    (
        "lat_p50_us",
        "end-to-end latency (receive time - ts), median (µs)",
    ),
    ("lat_p90_us", "end-to-end latency, p90 (µs)"),
    ("lat_p99_us", "end-to-end latency, p99 (µs)"),
    ("lat_p999_us", "end-to-end latency, p99.9 (µs)"),
    ("lat_max_us", "end-to-end latency, max (µs)"),
    ("publishers", "connections publishing"),
    ("published", "publish operations sent in the window"),
    ("error_frames", "error frames received in the window"),
    (
        "pub_lat_p50_us",
        "publisher-to-subscriber latency p50 (µs; receive time - the publisher's sent_us)",
    ),
    ("pub_lat_p99_us", "publisher-to-subscriber latency p99 (µs)"),
    (
        "server_cpu_pct",
        "server CPU over the window (% of one core)",
    ),
    (
        "server_cpu_ns_per_msg",
        "server CPU ns per delivered message",
    ),
    ("server_rss_start_kib", "server VmRSS before clients (KiB)"),
    (
        "server_rss_connected_kib",
        "server VmRSS with every client connected (KiB)",
    ),
    (
        "server_rss_end_kib",
        "server VmRSS at the end of the window (KiB)",
    ),
    (
        "rss_kib_per_conn",
        "(rss_connected - rss_start) / connected (KiB)",
    ),
    (
        "server_drops",
        "server drops in the window by reason (`/metrics`)",
    ),
    ("server_drops_total", "sum of server_drops"),
    (
        "load_cpu_pct",
        "load generator CPU (% of the CPUs it may use)",
    ),
    (
        "load_thread_max_cpu_pct",
        "busiest load generator thread (% of one core)",
    ),
    (
        "client_bound",
        "load generator at >= 90 % CPU: a failed point may be the client's limit",
    ),
    (
        "sustainable",
        "delivery >= 99 %, p99 <= 100 ms, every client connected",
    ),
];

/// The header line of `raw.csv`.
pub fn header() -> String {
    COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The schema as a markdown table, for results READMEs.
pub fn markdown() -> String {
    let mut out = String::from("| column | meaning |\n|---|---|\n");
    for (name, meaning) in COLUMNS {
        out.push_str(&format!("| `{name}` | {meaning} |\n"));
    }
    out
}

/// Columns a results file may lack: those added after the first sweeps, whose cells may be
/// empty anyway (a test checks that these are exactly the columns a row can be read without).
pub const MAY_BE_ABSENT: &[&str] = &[
    "server_handshake_p99_us",
    "pub_lat_p50_us",
    "pub_lat_p99_us",
    "server_cpu_pct",
    "server_cpu_ns_per_msg",
    "server_rss_start_kib",
    "server_rss_connected_kib",
    "server_rss_end_kib",
    "rss_kib_per_conn",
    "server_drops_total",
];

/// The first line of the file at `path` (`None` when there is no such file).
fn first_line(path: &Path) -> io::Result<Option<String>> {
    match std::fs::File::open(path) {
        Ok(f) => {
            // A header is well under 4 KiB; a longer first line is not ours anyway.
            let mut first = String::new();
            BufReader::new(f.take(4096)).read_line(&mut first)?;
            Ok(Some(first.trim_end().to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a row may be appended below `first_line`: true when the header is still to be
/// written, false when it is there; an error for another file's header.
fn needs_header(path: &Path, first_line: Option<&str>) -> io::Result<bool> {
    match first_line {
        None | Some("") => Ok(true),
        Some(h) if h == header() => Ok(false),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} has another header; use a new file", path.display()),
        )),
    }
}

/// Checks, before a run, that [`append_row`] will be able to write to `path`: an existing
/// file must be writable and hold this schema's header (or nothing); a new one must be
/// creatable (it is created and removed again). The error is a sentence for the user.
pub fn check_appendable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let first = first_line(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    needs_header(path, first.as_deref()).map_err(|e| e.to_string())?;
    let opened = if first.is_some() {
        OpenOptions::new().append(true).open(path).map(|_| ())
    } else {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|_| std::fs::remove_file(path))
    };
    opened.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            format!(
                "cannot write {shown}: the folder {} does not exist",
                folder.display()
            )
        }
        io::ErrorKind::PermissionDenied => format!("cannot write {shown}: permission denied"),
        _ => format!("cannot write {shown}: {e}"),
    })
}

/// Appends `row` to the CSV file at `path`, writing the header first when the file is new or
/// empty. A file whose header is not this schema's is refused rather than mixed.
pub fn append_row(path: &Path, row: &Row) -> io::Result<()> {
    let need_header = needs_header(path, first_line(path)?.as_deref())?;
    let mut writer = csv::WriterBuilder::new()
        .has_headers(need_header)
        .from_writer(Vec::new());
    writer.serialize(row).map_err(io::Error::other)?;
    let bytes = writer
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // One write per row, so concurrent appenders cannot interleave within a line.
    file.write_all(&bytes)
}

/// The columns of [`COLUMNS`] that a file with this header lacks and may not lack.
pub fn missing_columns<'a>(header: impl IntoIterator<Item = &'a str> + Clone) -> Vec<&'static str> {
    COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !MAY_BE_ABSENT.contains(name))
        .filter(|name| !header.clone().into_iter().any(|h| h == *name))
        .collect()
}

/// Reads every row of a `raw.csv`. A file that is not one (no header, or a header without
/// the schema's columns) is refused with the columns it lacks; so is one without rows.
pub fn read_rows(path: &Path) -> io::Result<Vec<Row>> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let mut reader = csv::Reader::from_path(path).map_err(io::Error::other)?;
    let header = reader.headers().map_err(io::Error::other)?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(invalid(
            "empty: not a results file (tickcast load --csv writes them)".into(),
        ));
    }
    let missing = missing_columns(header.iter());
    if !missing.is_empty() {
        return Err(invalid(format!(
            "not a results file (tickcast load --csv writes them): {} of its {} columns \
             missing: {}",
            missing.len(),
            COLUMNS.len() - MAY_BE_ABSENT.len(),
            missing.join(", ")
        )));
    }
    let rows = reader
        .deserialize()
        .map(|r| r.map_err(|e| invalid(e.to_string())))
        .collect::<io::Result<Vec<Row>>>()?;
    if rows.is_empty() {
        return Err(invalid("no rows: nothing measured yet".into()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
