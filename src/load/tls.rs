//! `wss://`: the load generator's TLS client settings, made once per run and shared by every
//! connection of every thread.
//!
//! Trust comes only from `--tls-ca` (PEM roots; a file without a certificate is refused at
//! start): a load test must fail when the server presents a certificate nobody vouched for,
//! not measure it. The server name is the URL's host: `localhost` as a DNS name, an address
//! as an IP address (rustls checks it against the certificate's IP subjectAltName). The
//! cryptography is rustls's ring provider, chosen explicitly; the protocol versions are
//! rustls's safe defaults (TLS 1.3 first, 1.2 allowed). Session resumption stays on, with
//! rustls's in-memory cache shared by every thread: after the first handshakes, connections
//! resume (as a returning browser would) rather than each doing a full handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::config::Target;

/// What every TLS connection of a run is made from.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// Roots, provider, versions and the session cache, shared by all connections.
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// The client for `target`, trusting the PEM certificates in `ca_file`.
    pub fn new(target: &Target, ca_file: &Path) -> Result<TlsClient, String> {
        let roots = load_roots(ca_file)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // What a browser offers for a WebSocket over TLS.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: server_name(target)?,
        })
    }
}

/// Every certificate of the PEM file `path`; an error when it cannot be read, holds a bad
/// PEM block, or has no certificate at all.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "--tls-ca {}: no certificate in the file (want PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The name checked against the server's certificate: the URL's host.
pub fn server_name(target: &Target) -> Result<ServerName<'static>, String> {
    let host = target.hostname();
    if host.eq_ignore_ascii_case("localhost") {
        return ServerName::try_from(host.to_ascii_lowercase()).map_err(|e| format!("{host}: {e}"));
    }
    Ok(ServerName::IpAddress(target.addr.ip().into()))
}

/// The reason a TLS failure is counted under in the summary (`tls_unknown_issuer`, ...).
pub fn failure_reason(e: &rustls::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => "tls_unknown_issuer",
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "tls_wrong_name"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "tls_expired",
        E::InvalidCertificate(_) => "tls_bad_certificate",
        E::AlertReceived(_) => "tls_alert",
        E::NoApplicationProtocol => "tls_no_alpn",
        _ => "tls_error",
    }
}

/// A blocking TLS stream over `sock` (for the `/metrics` scrape).
pub fn blocking_stream(
    client: &TlsClient,
    sock: std::net::TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, rustls::Error> {
    let conn =
        rustls::ClientConnection::new(Arc::clone(&client.config), client.server_name.clone())?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tickcast-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn roots_come_from_pem_certificates_only() {
        let target = Target::parse("wss://127.0.0.1:8443/ws").unwrap();
        let good = temp_file("ca.pem", &ca_pem());
        let client = TlsClient::new(&target, &good).unwrap();
        assert_eq!(client.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let key_only = temp_file(
            "key.pem",
            &rcgen::KeyPair::generate().unwrap().serialize_pem(),
        );
        let err = TlsClient::new(&target, &key_only).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let empty = temp_file("empty.pem", "");
        assert!(load_roots(&empty).unwrap_err().contains("no certificate"));
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert!(
            load_roots(missing)
                .unwrap_err()
                .contains("/nonexistent/ca.pem")
        );
        let _ = std::fs::remove_dir_all(good.parent().unwrap());
    }

    #[test]
    fn the_server_name_is_the_urls_host() {
        let ip = Target::parse("wss://127.0.0.2:9/ws").unwrap();
        assert_eq!(
            server_name(&ip).unwrap(),
            ServerName::IpAddress(IpAddr::from([127, 0, 0, 2]).into())
        );
        let name = Target::parse("wss://LocalHost/ws").unwrap();
        assert_eq!(
            server_name(&name).unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
    }

    #[test]
    fn certificate_failures_have_short_reasons() {
        use rustls::{CertificateError as C, Error as E};
        assert_eq!(
            failure_reason(&E::InvalidCertificate(C::UnknownIssuer)),
            "tls_unknown_issuer"
        );
        assert_eq!(
            failure_reason(&E::InvalidCertificate(C::NotValidForName)),
            "tls_wrong_name"
        );
        assert_eq!(
            failure_reason(&E::InvalidCertificate(C::BadSignature)),
            "tls_bad_certificate"
        );
        assert_eq!(failure_reason(&E::HandshakeNotComplete), "tls_error");
    }
}
