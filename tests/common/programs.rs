//! External programs some tests drive: `redis-server`, headless Chromium, nginx, haproxy,
//! podman and util-linux's `unshare`.
//! CI has them all (`scripts/test.sh` installs them), so a test that cannot find one fails,
//! naming what is missing and how to install it, instead of passing without having run.

use std::path::{Path, PathBuf};

/// An external program a test needs.
pub struct Program {
    /// What the program is, for messages.
    pub what: &'static str,
    /// An environment variable that, when set and not empty, names the program to use
    /// instead: a path, or a name looked up on `PATH`.
    pub env: Option<&'static str>,
    /// Executable names tried on `PATH`, in order.
    pub names: &'static [&'static str],
    /// The Debian package that installs it (what `scripts/test.sh` installs).
    pub package: &'static str,
}

/// `redis-server`, for the cluster tests (tests/redis.rs).
pub const REDIS_SERVER: Program = Program {
    what: "redis-server",
    env: None,
    names: &["redis-server"],
    package: "redis-server",
};

/// `redis-cli`, to build a Redis Cluster (tests/redis_cluster.rs); Debian's redis-server
/// package brings it.
pub const REDIS_CLI: Program = Program {
    what: "redis-cli",
    env: None,
    names: &["redis-cli"],
    package: "redis-tools",
};

/// Chromium, for the dashboard test (tests/dashboard.rs). Debian's package installs
/// `chromium`; `scripts/test.sh` looks for the same names and `$TICKCAST_CHROMIUM`.
pub const CHROMIUM: Program = Program {
    what: "Chromium",
    env: Some("TICKCAST_CHROMIUM"),
    names: &[
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ],
    package: "chromium",
};

/// nginx, in front of the server in tests/proxies.rs and tests/load_tls.rs (Debian's
/// `nginx-light` is enough; it installs to /usr/sbin, which a non-root PATH may lack).
pub const NGINX: Program = Program {
    what: "nginx",
    env: None,
    names: &["nginx", "/usr/sbin/nginx"],
    package: "nginx-light",
};

/// haproxy, in front of the server in tests/proxies.rs.
pub const HAPROXY: Program = Program {
    what: "haproxy",
    env: None,
    names: &["haproxy", "/usr/sbin/haproxy"],
    package: "haproxy",
};

/// podman, to build the container image and export its files (tests/container.rs).
pub const PODMAN: Program = Program {
    what: "podman",
    env: None,
    names: &["podman"],
    package: "podman",
};

/// util-linux's `unshare`, to run the exported image in fresh namespaces (tests/container.rs).
pub const UNSHARE: Program = Program {
    what: "unshare",
    env: None,
    names: &["unshare", "/usr/bin/unshare"],
    package: "util-linux",
};

/// The path of `program`, or a test failure that says what is missing, where it was looked
/// for, and that `scripts/test.sh` installs it.
pub fn require_program(program: &Program) -> PathBuf {
    let install = format!(
        "scripts/test.sh installs it (Debian package `{0}`: `apt-get install -y {0}`)",
        program.package
    );
    if let Some(var) = program.env
        && let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty())
    {
        let value = PathBuf::from(value);
        return find_executable(&value).unwrap_or_else(|| {
            panic!(
                "{} is required: ${var}={} is not an executable file, nor one on PATH \
                 (unset it to look for {} on PATH); {install}",
                program.what,
                value.display(),
                program.names.join(", ")
            )
        });
    }
    program
        .names
        .iter()
        .find_map(|name| find_executable(Path::new(name)))
        .unwrap_or_else(|| {
            let env = program
                .env
                .map(|var| format!(" (${var} is not set)"))
                .unwrap_or_default();
            panic!(
                "{} is required and was not found: looked for {} on PATH{env}; {install}",
                program.what,
                program.names.join(", ")
            )
        })
}

/// `name` itself if it is a path to an executable file, else the first executable file of
/// that name in a directory of `PATH`.
fn find_executable(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Stops a child server the way its operator would: SIGTERM (nginx and haproxy then stop
/// their workers too), SIGKILL only if it is still there after 5 s. A SIGKILL alone would
/// leave nginx's workers running.
pub fn stop_child(child: &mut std::process::Child) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
