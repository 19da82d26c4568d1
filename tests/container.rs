//! The container image, run from its own files. `scripts/image.sh` builds it (a static
//! binary, `FROM scratch`, COPY only); the test exports its root filesystem with `podman
//! create` and `podman export`, and runs the image's entrypoint and command, with the
//! image's environment, as the image's `USER`, chrooted into that filesystem in fresh mount,
//! PID, UTS and IPC namespaces (`unshare --root`), on the host's network as `podman run
//! --network=host` would. `podman run` cannot start a container where this was written, so
//! the test plays the runtime's part: it adds what a runtime adds to a container (`/proc`,
//! `/etc/hosts`, `/etc/resolv.conf`) and runs the `HEALTHCHECK` command itself.
//!
//! It checks the image holds only its four files and runs as a non-root user; that `/healthz`
//! answers and a WebSocket client gets ticks; that `--redis` finds Redis by host NAME in the
//! image, once through /etc/hosts and once through DNS (a responder on 127.53.0.1:53 that
//! knows only that name, and counts the questions), which a static glibc does without NSS
//! modules: `/healthz` says `degraded: redis` until the bus is connected, so a name that did
//! not resolve fails the test; and that the HEALTHCHECK passes while the server runs and fails
//! once it stopped. It removes the container, the image and every file it made (the static
//! build in target/static stays, like any build).
//!
//! Needs root (namespaces, chroot, setuid, port 53): the project's machines and CI run the
//! suite as root; the GitHub workflow runs scripts/test.sh under sudo.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The address the test's DNS responder answers on (any 127/8 address is loopback; not
/// 127.0.0.1, where a host's own resolver may listen).
const DNS_ADDR: &str = "127.53.0.1:53";

#[test]
fn the_image_serves_as_its_user_and_finds_redis_by_name() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tests/container.rs needs root (unshare, chroot, setuid, port 53): run the suite as \
         root, as CI does"
    );
    let podman = require_program(&PODMAN);
    let unshare = require_program(&UNSHARE);
    let mut made = Made::new(podman.clone());

    // The image, built the way an operator builds it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/image.sh"))
        .args(["--tag", &made.tag])
        .current_dir(root)
        .output()
        .expect("run scripts/image.sh");
    made.image = true;
    assert!(
        built.status.success(),
        "scripts/image.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = Image::inspect(&podman, &made.tag);
    assert_ne!(image.uid, 0, "the image runs as root: {}", image.user);
    assert_eq!(image.exposed, ["8080/tcp"]);
    assert_eq!(
        image.healthcheck,
        ["CMD", "/tickcast", "health", "--timeout", "2"],
        "HEALTHCHECK kept (docker format) and runs the binary's own probe"
    );

    // Its root filesystem, as a container would get it.
    let created = run(Command::new(&podman).args(["create", "--no-healthcheck", &made.tag]));
    made.container = Some(String::from_utf8_lossy(&created.stdout).trim().to_string());
    let tar = made.dir.join("rootfs.tar");
    run(Command::new(&podman).args([
        "export",
        "-o",
        tar.to_str().unwrap(),
        made.container.as_deref().unwrap(),
    ]));
    let rootfs = made.dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    run(Command::new("tar").args(["-xf", tar.to_str().unwrap(), "-C", rootfs.to_str().unwrap()]));
    assert_eq!(
        regular_files(&rootfs),
        BTreeSet::from(
            ["etc/group", "etc/nsswitch.conf", "etc/passwd", "tickcast"].map(String::from)
        ),
        "the image holds the binary and its three files, nothing else (no shell, no libc)"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("tickcast:x:{}:{}:", image.uid, image.gid))),
        "etc/passwd names the image's user: {passwd}"
    );
    // What a runtime adds to every container: /proc, and the host names and name server.
    std::fs::create_dir_all(rootfs.join("proc")).unwrap();
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 redis-by-hosts.test\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/resolv.conf"),
        format!(
            "nameserver {}\noptions timeout:1 attempts:2\n",
            DNS_ADDR.trim_end_matches(":53")
        ),
    )
    .unwrap();
    let runtime = Runtime {
        unshare,
        rootfs,
        image,
    };

    let redis = Redis::start(free_port());
    let redis_port = redis.url().rsplit(':').next().unwrap().to_string();
    let dns = Dns::start("redis-by-dns.test");

    // Through /etc/hosts: health, a WebSocket client, the user, the HEALTHCHECK.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = runtime.serve(port, &format!("redis-by-hosts.test:{redis_port}"));
    wait_health_ok(addr, &mut server);
    let (mut ws, _shard) = connect_stream(addr, "ticks");
    let tick = next_data(&mut ws);
    assert_eq!(tick["topic"], "ticks", "{tick}");
    close_client(ws);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid)).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(ids("Uid:"), vec![runtime.image.uid.to_string(); 4]);
    assert_eq!(ids("Gid:"), vec![runtime.image.gid.to_string(); 4]);
    let probe = runtime.healthcheck(port);
    assert!(
        probe.status.success(),
        "HEALTHCHECK failed on a running server: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "ok\n");
    server.stop();
    let probe = runtime.healthcheck(port);
    assert!(
        !probe.status.success(),
        "HEALTHCHECK passed with the server stopped"
    );

    // Through DNS: no /etc/hosts entry for this name; the responder must be asked.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = runtime.serve(port, &format!("redis://redis-by-dns.test:{redis_port}"));
    wait_health_ok(addr, &mut server);
    server.stop();
    let (asked, answered) = dns.finish();
    assert!(
        answered > 0,
        "the server reached Redis without the DNS responder answering ({asked} questions)"
    );
    drop(redis);
}

/// Waits (bounded) until `/healthz` says `ok`: the server is up and its Redis bus connected
/// (`degraded: redis` before). Fails early if the server exited.
fn wait_health_ok(addr: SocketAddr, server: &mut Served) {
    let mut last = String::new();
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Ok(Some(status)) = server.unshare.try_wait() {
            panic!("the server exited: {status}; last /healthz: {last:?}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            let (code, body) = http_get(addr, "/healthz");
            if code == 200 && body == "ok\n" {
                return;
            }
            last = format!("{code} {body}");
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never said ok (last: {last:?}): the Redis host name did not resolve \
             in the image, or Redis was not reached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The image's configuration, as `podman image inspect` reports it.
struct Image {
    user: String,
    uid: u32,
    gid: u32,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    exposed: Vec<String>,
    healthcheck: Vec<String>,
}

impl Image {
    fn inspect(podman: &Path, tag: &str) -> Image {
        let out = run(Command::new(podman).args(["image", "inspect", tag]));
        let all: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
        let image = &all[0];
        let config = &image["Config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let user = config["User"].as_str().unwrap_or("").to_string();
        let (uid, gid) = user
            .split_once(':')
            .map(|(u, g)| (u.parse().ok(), g.parse().ok()))
            .unwrap_or((None, None));
        let (Some(uid), Some(gid)) = (uid, gid) else {
            panic!("the image's USER is not numeric uid:gid: {user:?}");
        };
        let env = strings(&config["Env"])
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        let exposed = config["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        Image {
            user,
            uid,
            gid,
            env,
            entrypoint: strings(&config["Entrypoint"]),
            cmd: strings(&config["Cmd"]),
            exposed,
            healthcheck: strings(&image["Healthcheck"]["Test"]),
        }
    }
}

/// Runs commands the way a container runtime would run them in the image.
struct Runtime {
    unshare: PathBuf,
    rootfs: PathBuf,
    image: Image,
}

impl Runtime {
    /// `argv` inside the image: fresh mount, PID, UTS and IPC namespaces, /proc mounted, the
    /// exported files as `/`, the image's user, its environment plus `env`, as `-e` adds.
    fn command(&self, argv: &[String], env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(&self.unshare);
        cmd.args(["--mount", "--pid", "--uts", "--ipc", "--fork"])
            .arg(format!("--root={}", self.rootfs.display()))
            .arg("--mount-proc=/proc")
            .arg(format!("--setuid={}", self.image.uid))
            .arg(format!("--setgid={}", self.image.gid))
            .arg("--")
            .args(argv)
            .env_clear();
        for (k, v) in &self.image.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The image's entrypoint and command plus `--redis url`, listening on 127.0.0.1:port
    /// (the host's network).
    fn serve(&self, port: u16, redis: &str) -> Served {
        let mut argv = self.image.entrypoint.clone();
        argv.extend(self.image.cmd.iter().cloned());
        argv.extend(["--redis".to_string(), redis.to_string()]);
        argv.extend(["--shards", "1", "--no-pin"].map(String::from));
        let mut unshare = self
            .command(
                &argv,
                &[
                    ("TICKCAST_LISTEN", format!("127.0.0.1:{port}")),
                    ("RUST_LOG", "warn".to_string()),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare");
        // The server is unshare's forked child (PID 1 of the new namespace).
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let mut pid = 0;
        wait_for("the server process under unshare", || {
            if let Ok(Some(status)) = unshare.try_wait() {
                panic!("unshare exited at start: {status}");
            }
            pid = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
                .unwrap_or(0);
            pid != 0
        });
        Served { unshare, pid }
    }

    /// The image's HEALTHCHECK command (`CMD` form), inside the image, for a server on
    /// 127.0.0.1:port; bounded by the probe's own `--timeout`.
    fn healthcheck(&self, port: u16) -> Output {
        let argv = &self.image.healthcheck;
        assert_eq!(argv[0], "CMD", "{argv:?}");
        self.command(
            &argv[1..],
            &[("TICKCAST_LISTEN", format!("127.0.0.1:{port}"))],
        )
        .output()
        .expect("run the healthcheck")
    }
}

/// A server started by [`Runtime::serve`]: `unshare` and the server's pid (its child).
struct Served {
    unshare: Child,
    pid: libc::pid_t,
}

impl Served {
    /// SIGTERM to the server (a graceful shutdown, as `podman stop` sends), then waits
    /// (bounded) for unshare to exit with it; on failure, drop kills both.
    fn stop(&mut self) {
        // SAFETY: kill(2) on the pid of the server this test started, still running or a
        // zombie of unshare's (unshare waits for it before exiting).
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.unshare.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not stop within {WAIT_LIMIT:?} of SIGTERM");
    }
}

impl Drop for Served {
    /// A test that failed midway: SIGKILL to the server itself, then unshare. Killing unshare
    /// alone would not do: `--kill-child` is a parent-death signal, which the kernel clears
    /// when the child changes its credentials (`--setuid`).
    fn drop(&mut self) {
        if let Ok(None) = self.unshare.try_wait() {
            // SAFETY: kill(2) on the server this test started; unshare has not reaped it.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            stop_child(&mut self.unshare);
        }
    }
}

/// A DNS responder that knows one name (A: 127.0.0.1; AAAA: none) and answers NXDOMAIN
/// otherwise, on its own thread; counts the questions it got and the answers it gave.
struct Dns {
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Dns {
    fn start(name: &str) -> Dns {
        let socket = UdpSocket::bind(DNS_ADDR)
            .unwrap_or_else(|e| panic!("bind the DNS responder on {DNS_ADDR}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let name = name.to_ascii_lowercase();
        let thread = {
            let (stop, asked, answered) = (stop.clone(), asked.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    asked.fetch_add(1, Ordering::SeqCst);
                    if let Some((reply, address)) = dns_reply(&buf[..n], &name) {
                        if address {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        Dns {
            stop,
            asked,
            answered,
            thread,
        }
    }

    /// Stops the responder; (questions, A answers given).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("DNS responder thread");
        (
            self.asked.load(Ordering::SeqCst),
            self.answered.load(Ordering::SeqCst),
        )
    }
}

/// The reply to one DNS query (RFC 1035 §4.1) and whether it carries an address: for `name`,
/// an A record 127.0.0.1 (AAAA and other types: no records); for any other name, NXDOMAIN.
/// None for a packet that is not a one-question query.
fn dns_reply(query: &[u8], name: &str) -> Option<(Vec<u8>, bool)> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let known = labels.join(".") == name;
    let address = known && qtype == 1;
    let mut reply = Vec::with_capacity(question.len() + 28);
    reply.extend_from_slice(&query[0..2]);
    // Response, recursion desired and available; NXDOMAIN for unknown names.
    reply.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    reply.extend_from_slice(&[0, 1, 0, u8::from(address), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if address {
        // A pointer to the question's name, type A, class IN, TTL 60, 4 bytes: 127.0.0.1.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some((reply, address))
}

/// Runs `cmd` to completion; fails the test with its stderr unless it succeeded.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Paths of the regular files under `dir`, relative to it.
fn regular_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// What the test made, removed on drop whatever happened: the container, the image (its
/// tag, unique to this run) and the working directory (the export and its files).
struct Made {
    podman: PathBuf,
    tag: String,
    image: bool,
    container: Option<String>,
    dir: PathBuf,
}

impl Made {
    fn new(podman: PathBuf) -> Made {
        let dir =
            std::env::temp_dir().join(format!("tickcast-container-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Made {
            podman,
            tag: format!("localhost/tickcast-test:{}", std::process::id()),
            image: false,
            container: None,
            dir,
        }
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new(&self.podman)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if let Some(id) = &self.container {
            quiet(&["rm", "--force", id]);
        }
        if self.image {
            quiet(&["rmi", "--force", &self.tag]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_dns_responder_answers_only_its_name() {
    // A query for redis.test, type A, id 0x1234, recursion desired.
    let query = |name: &str, qtype: u8| {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, qtype, 0, 1]);
        q
    };
    let (reply, address) = dns_reply(&query("Redis.test", 1), "redis.test").unwrap();
    assert!(address);
    assert_eq!(&reply[0..4], &[0x12, 0x34, 0x81, 0x80]);
    assert_eq!(&reply[6..8], &[0, 1], "one answer");
    assert_eq!(&reply[reply.len() - 4..], &[127, 0, 0, 1]);
    let (reply, address) = dns_reply(&query("redis.test", 28), "redis.test").unwrap();
    assert!(!address);
    assert_eq!(&reply[2..8], &[0x81, 0x80, 0, 1, 0, 0], "AAAA: no records");
    let (reply, address) = dns_reply(&query("other.test", 1), "redis.test").unwrap();
    assert!(!address);
    assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
    assert!(dns_reply(&[0u8; 5], "redis.test").is_none());
}
