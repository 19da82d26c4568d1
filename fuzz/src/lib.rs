//! The checks behind tickcast's fuzz targets, one module per entry point that network bytes
//! reach. Each `check(data)` runs the parser on arbitrary bytes and asserts the parser's own
//! invariants (not only "no panic"); a failed assertion is a crash the fuzzer keeps.
//!
//! - [`http_request`]: the request head parser, routing, and the query values an upgrade
//!   reads (`topics`, `room`, `since`, `client_id`, `token`);
//! - [`ws_frames`]: client frames and message reassembly: UTF-8, close codes, size limits,
//!   and the same result however the bytes are split across reads;
//! - [`client_ops`]: the JSON operations, and what a publish's `data` becomes;
//! - [`chat`]: the chat commands;
//! - [`deflate`]: permessage-deflate offers, the bounded inflater, the compressor's round
//!   trip, and frames on a deflate connection;
//! - [`token`]: token verification, which must never accept a token it should refuse;
//! - [`conn_state`]: one connection's state machine driven by byte chunks, reads, timer
//!   ticks on a fake clock, broadcasts and shutdown: it never writes after its close frame,
//!   never holds more than its outbox limit, and always ends, with a valid close code;
//! - [`proxy`]: the PROXY protocol header (its end found exactly, its prefixes never refused)
//!   and the client's address read from forwarding headers (the peer or an address written
//!   there).
//!
//! The fuzz targets (`fuzz_targets/`) only call these; `tests/replay.rs` runs the same
//! checks over the seeds, the corpus and the regression inputs on a stable toolchain.

pub mod chat;
pub mod client_ops;
pub mod conn_state;
pub mod deflate;
pub mod http_request;
pub mod proxy;
pub mod token;
pub mod ws_frames;

/// The inputs a target's replay covers: `seeds/<target>`, `corpus/<target>` and
/// `regressions/<target>` under the fuzz directory, sorted by path.
pub fn replay_inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}
