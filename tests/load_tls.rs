//! `tickcast load` over `wss://`, without the server's own TLS: nginx terminates TLS in front
//! of a plain tickcast server, with a certificate for 127.0.0.1 signed by a CA made here.
//! The load binary must deliver every message through it, and refuse (every connection,
//! counted by reason) a server whose certificate the given CA did not sign.
//!
//! nginx is required: `scripts/test.sh` installs it (Debian `nginx-light`); without it this
//! test fails rather than skips.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A throwaway folder for certificates and nginx's files, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tickcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and a server certificate for 127.0.0.1 it signed (PEM files in `dir`).
struct Pki {
    ca: PathBuf,
    /// The server's chain: its certificate, then the CA's.
    chain: PathBuf,
    key: PathBuf,
}

fn make_ca(cn: &str) -> (rcgen::CertificateParams, rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (params, key, pem)
}

fn make_pki(dir: &Path) -> Pki {
    let (ca_params, ca_key, ca_pem) = make_ca("tickcast test CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let pki = Pki {
        ca: dir.join("ca.pem"),
        chain: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, &ca_pem).unwrap();
    std::fs::write(&pki.chain, format!("{}{ca_pem}", cert.pem())).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// A free port on 127.0.0.1 (free when asked; nginx binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// nginx in the foreground, one process (no workers to orphan), killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx terminating TLS on a free port of 127.0.0.1 with `pki`'s certificate,
    /// proxying WebSocket upgrades to `upstream`. Waits until it accepts connections.
    fn start(dir: &Path, pki: &Pki, upstream: SocketAddr) -> Nginx {
        let nginx = require_program(&NGINX);
        let port = free_port();
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let conf = format!(
            r#"events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 120s;
        }}
    }}
}}
"#,
            tmp = tmp.display(),
            chain = pki.chain.display(),
            key = pki.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let globals = format!(
            "daemon off; master_process off; pid {}/nginx.pid; error_log stderr;",
            dir.display()
        );
        let log = std::fs::File::create(dir.join("nginx.log")).unwrap();
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c", "nginx.conf", "-g", &globals])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx.display()));
        let mut proxy = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("nginx exited ({status}) at start:\n{}", proxy.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Runs `tickcast load URL ARGS... --json --quiet` and returns its output.
fn load(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("load")
        .arg(url)
        .args(args)
        .args(["--json", "--quiet"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run tickcast load")
}

/// The JSON summary `tickcast load --json` printed.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn wss_through_a_tls_proxy_delivers_everything_and_an_unknown_ca_fails_every_connection() {
    let dir = TempDir::new("load-tls");
    let pki = make_pki(&dir.0);
    let server = start(test_config(1));
    let proxy = Nginx::start(&dir.0, &pki, server.local_addr());
    let url = format!("wss://127.0.0.1:{}/ws?topics=ticks", proxy.port);
    let ca = pki.ca.to_str().unwrap();

    // 50 clients for 3 s of ticks every 10 ms, all through nginx's TLS.
    let out = load(
        &url,
        &[
            "-n",
            "50",
            "--threads",
            "2",
            "--connect-rate",
            "500",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--tls-ca",
            ca,
            "--scrape-metrics",
        ],
    );
    let s = summary(&out);
    let context = || format!("{s:#}\nnginx:\n{}", proxy.log());
    assert!(out.status.success(), "tickcast load failed: {}", context());
    assert_eq!(s["connected"], 50, "{}", context());
    assert_eq!(s["connect_failures"], 0, "{}", context());
    assert!(s["messages"].as_u64().unwrap() > 0, "{}", context());
    assert_eq!(s["seq_gaps"], 0, "{}", context());
    assert!(
        s["delivery_ratio"].as_f64().unwrap() >= 0.99,
        "{}",
        context()
    );
    let ticks = s["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "ticks")
        .unwrap_or_else(|| panic!("no ticks: {}", context()));
    assert_eq!(ticks["messages"], s["messages"]);
    assert_eq!(
        (ticks["gaps"].as_u64(), ticks["reordered"].as_u64()),
        (Some(0), Some(0))
    );
    // Every connection's handshake (TCP, TLS, upgrade) was timed, none closed under it.
    assert!(s["handshake_p50_us"].as_u64().unwrap() > 0);
    assert_eq!(s["closes"], "", "{}", context());
    // /metrics was read through the proxy over TLS too: the drop counters are there.
    assert_eq!(s["server_drops_total"], 0, "{}", context());

    // Another CA: no connection may get through, and each failure says why.
    let (_, _, other_pem) = make_ca("another CA");
    let other = dir.0.join("other-ca.pem");
    std::fs::write(&other, other_pem).unwrap();
    let out = load(
        &url,
        &[
            "-n",
            "20",
            "--warmup",
            "0",
            "--duration",
            "0.5",
            "--tls-ca",
            other.to_str().unwrap(),
        ],
    );
    let s = summary(&out);
    assert!(!out.status.success(), "no connection, yet success: {s:#}");
    assert_eq!(s["connected"], 0, "{s:#}");
    assert_eq!(s["connect_failures"], 20, "{s:#}");
    assert_eq!(s["failure_reasons"], "tls_unknown_issuer=20", "{s:#}");

    drop(proxy);
    server.shutdown();
}

#[test]
fn wss_without_a_usable_ca_file_is_refused_at_start() {
    let dir = TempDir::new("load-tls-args");
    let url = "wss://127.0.0.1:9/ws";
    let out = load(url, &["-n", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--tls-ca"), "{stderr}");

    let no_cert = dir.0.join("key.pem");
    std::fs::write(
        &no_cert,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let out = load(url, &["-n", "1", "--tls-ca", no_cert.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no certificate"), "{stderr}");
    assert!(out.stdout.is_empty(), "refused before any connection");
}
