//! The `tickcast` binary as a child process: `tickcast serve` started on port 0 with its
//! address read from the "tickcast listening on ADDR" line it logs (text or JSON), and runs
//! that are expected to end (refusals), with their exit status and stderr.
//!
//! `RUST_LOG` is removed from every child so that only what a test passes decides logging.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::WAIT_LIMIT;

/// A running `tickcast serve`; killed on drop.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stderr line, the listening line included, as they come.
    pub stderr: mpsc::Receiver<String>,
    /// The lines read so far, in order (up to and including the listening line at first).
    pub seen: Vec<String>,
}

/// The `tickcast` binary with `args` and `envs`, without `RUST_LOG` or any inherited
/// `TICKCAST_*` variable.
pub fn tickcast(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickcast"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TICKCAST_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(envs.iter().copied());
    cmd
}

impl ServeProcess {
    /// Starts `tickcast <args>` (which should include `serve`) and waits for its listening
    /// line; panics with what it printed if it exits first.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> ServeProcess {
        let mut child = tickcast(args, envs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tickcast");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT_LIMIT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let addr = listening_addr(&line);
                    seen.push(line);
                    if let Some(addr) = addr {
                        break addr;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no listening line from {args:?}; stderr: {seen:#?}");
                }
            }
        };
        ServeProcess {
            child,
            addr,
            stderr: rx,
            seen,
        }
    }

    /// Reads stderr lines until one satisfies `pred` (bounded); returns the lines read on
    /// the way, that one last.
    pub fn lines_until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no stderr line {what}; read: {lines:#?}"));
            let done = pred(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Waits (bounded) for the server to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, "the server")
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a "tickcast listening on ADDR: ..." line (text or JSON).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("tickcast listening on ").nth(1)?;
    rest.split(": ").next()?.parse().ok()
}

/// Runs `tickcast <args>`, which must exit within the wait limit; returns its status and
/// its stderr.
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = tickcast(args, envs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickcast");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_exit(&mut child, &format!("tickcast {args:?}"));
    (status, reader.join().expect("stderr reader"))
}

/// Waits for `child` to exit within the wait limit; past it, kills it and fails the test
/// naming `what`.
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {WAIT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tickcast <args>` must be refused: a non-zero exit before listening, and a message on
/// stderr; returns that message.
pub fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let (status, stderr) = run_to_exit(args, envs);
    assert!(
        !status.success(),
        "{args:?} {envs:?} was accepted: {stderr}"
    );
    assert!(
        !stderr.contains("tickcast listening on"),
        "{args:?} started: {stderr}"
    );
    stderr
}

/// A message for operators shows no Rust debug text: no `Some(..)`, no `CamelCase` enum
/// variant names, no quoted-and-escaped structs.
pub fn assert_no_debug_text(message: &str) {
    for needle in ["Some(", "None", "Err(", "Ok(", " { ", "\\\""] {
        assert!(!message.contains(needle), "{needle:?} in {message:?}");
    }
    // A word like `KeyMismatch` or `InvalidClientConfig`: two capitals inside one word.
    let words = message.split(|c: char| !c.is_ascii_alphanumeric());
    for word in words.filter(|w| !["WebSocket", "HAProxy", "OpenMetrics"].contains(w)) {
        let inner_caps = word
            .chars()
            .skip(1)
            .filter(char::is_ascii_uppercase)
            .count();
        let lower = word.chars().any(|c| c.is_ascii_lowercase());
        assert!(
            !(inner_caps >= 1 && lower && word.starts_with(|c: char| c.is_ascii_uppercase())),
            "debug-looking word {word:?} in {message:?}"
        );
    }
}
