//! The proxies operators put in front of tickcast, run for real from the Debian packages
//! with the configuration files docs/security.md shows (`deploy/`): nginx terminating TLS,
//! haproxy in TCP mode. Each is started on a free port of 127.0.0.1 in front of a server's port, its
//! stderr kept in a log file for failure messages, and stopped (SIGTERM, then SIGKILL) when
//! dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HAPROXY, NGINX, Pki, WAIT_LIMIT, free_port, require_program, stop_child};

/// The deployment file `name` from `deploy/`, with the ports and certificate paths
/// docs/security.md shows replaced by the test's.
pub fn deployment(name: &str, front: u16, back: u16, pki: &Pki) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("deploy file");
    for fixed in ["127.0.0.1:8443", "127.0.0.1:8080"] {
        assert!(text.contains(fixed), "{name} no longer names {fixed}");
    }
    text.replace("127.0.0.1:8443", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{back}"))
        .replace(
            "/etc/tickcast/tls.crt",
            &pki.files.cert.display().to_string(),
        )
        .replace(
            "/etc/tickcast/tls.key",
            &pki.files.key.display().to_string(),
        )
}

/// Writes the deployment file `name` into `dir` for a free front port (returned with the
/// file's path) in front of 127.0.0.1:`back`.
fn write_deployment(name: &str, back: u16, pki: &Pki, dir: &Path) -> (PathBuf, u16) {
    let front = free_port();
    let conf = dir.join(name);
    let text = deployment(name, front, back, pki).replace(
        "/var/log/nginx/tickcast.access.log",
        &dir.join("access.log").display().to_string(),
    );
    std::fs::write(&conf, text).unwrap();
    (conf, front)
}

/// A running proxy: its port on 127.0.0.1, stopped and its folder removed when dropped.
pub struct Proxy {
    child: Child,
    dir: PathBuf,
    /// The port clients connect to.
    pub port: u16,
}

impl Proxy {
    /// What the proxy wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// The access log it wrote (nginx), empty when none.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Spawns `command` (its stderr to `dir`/proxy.log) and waits until `port` accepts
    /// connections; a proxy that exits or never listens fails the test with its log.
    fn spawn(mut command: Command, dir: &Path, port: u16) -> Proxy {
        let log = std::fs::File::create(dir.join("proxy.log")).expect("proxy log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let mut proxy = Proxy {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{command:?} exited ({status}) at start:\n{}", proxy.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} did not listen on {port}:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        stop_child(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx with `deploy/nginx.conf`: TLS with `pki`'s pair on a free port, proxying upgrades to
/// 127.0.0.1:`back`. `dir` holds its files and is removed with it.
pub fn start_nginx(back: u16, pki: &Pki, dir: &Path) -> Proxy {
    let nginx = require_program(&NGINX);
    let (conf, front) = write_deployment("nginx.conf", back, pki, dir);
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr", "-g"])
        .arg(format!(
            "daemon off; pid {}; error_log stderr;",
            dir.join("nginx.pid").display()
        ));
    Proxy::spawn(command, dir, front)
}

/// haproxy with `deploy/haproxy.cfg`: TCP mode on a free port, passing TLS through to
/// 127.0.0.1:`back` with a PROXY v2 header.
pub fn start_haproxy(back: u16, pki: &Pki, dir: &Path) -> Proxy {
    let haproxy = require_program(&HAPROXY);
    let (conf, front) = write_deployment("haproxy.cfg", back, pki, dir);
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(&conf);
    Proxy::spawn(command, dir, front)
}
