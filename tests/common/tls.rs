//! TLS for the tests: a throwaway CA and a server certificate for `localhost` and
//! 127.0.0.1 made with rcgen and written as PEM files, and real verifying clients (rustls)
//! for `wss://` and `https://`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tickcast::config::TlsFiles;
use tungstenite::WebSocket;

use super::READ_TIMEOUT;

/// A `wss://` client.
pub type TlsClient = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A CA and a server pair it signed, written under `dir` as `<name>.crt`/`<name>.key`, with
/// the CA as `<name>-ca.crt`.
pub struct Pki {
    /// The server's certificate chain (leaf, CA) and key.
    pub files: TlsFiles,
    /// The CA certificate clients trust.
    pub ca: CertificateDer<'static>,
    /// The CA as a PEM file.
    pub ca_file: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("tickcast test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf = params.signed_by(&key, &ca).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let ca_file = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            files,
            ca: ca.der().clone(),
            ca_file,
        }
    }

    /// Copies this pair over `files` (what an operator does before SIGHUP).
    pub fn install_as(&self, files: &TlsFiles) {
        std::fs::copy(&self.files.cert, &files.cert).unwrap();
        std::fs::copy(&self.files.key, &files.key).unwrap();
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickcast-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A client configuration that trusts only `ca`.
pub fn client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS stream to `addr` for `name`, handshake completed (errors as text).
pub fn tls_stream(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    name: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let session =
        ClientConnection::new(client_config(ca), server_name).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// A verifying `wss://` client on `path`, for server name `name`.
pub fn try_connect_tls(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    name: &str,
    path: &str,
) -> Result<TlsClient, String> {
    let stream = tls_stream(addr, ca, name)?;
    let url = format!("wss://{name}:{}{path}", addr.port());
    let (ws, _resp) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    Ok(ws)
}

pub fn connect_tls(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str) -> TlsClient {
    try_connect_tls(addr, ca, "localhost", path).unwrap_or_else(|e| panic!("wss {path}: {e}"))
}

/// `GET path` over https; returns the status and body.
pub fn https_get(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str) -> (u16, String) {
    let mut stream = tls_stream(addr, ca, "localhost").expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // The server closes after its answer, with a close_notify or without.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = super::status_of(&text);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
