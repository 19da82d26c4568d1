//! A real `redis-server` for the tests that need one, started on a free port and killed when
//! dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use super::{REDIS_SERVER, require_program, wait_for};

/// A redis-server child process on a given port, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts redis-server on `port` and waits (bounded) until it listens. Fails the test
    /// when redis-server is not installed (scripts/test.sh installs it) or exits early.
    pub fn start(port: u16) -> Redis {
        let program = require_program(&REDIS_SERVER);
        let child = Command::new(&program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut redis = Redis { child, port };
        wait_for("redis-server to listen", || {
            if let Some(status) = redis.child.try_wait().unwrap() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
