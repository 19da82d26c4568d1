//! Native TLS (`wss://`): the certificate chain and key the operator names, loaded at start
//! and again on SIGHUP, and the rustls configuration every shard makes its new connections
//! from.
//!
//! rustls does no I/O of its own, so a connection's TLS state lives inside the connection
//! and is driven by the shard's mio loop (`conn/transport.rs`). This module only owns what
//! all shards share: one [`rustls::ServerConfig`] whose certificate comes from a resolver
//! that can be swapped while the server runs. A reload replaces the pair for handshakes
//! that start afterwards; open connections keep the keys they agreed. A pair that does not
//! load (missing file, no certificate, no key, a key that does not match the certificate) is
//! an error at start and a logged refusal on reload, the old pair kept.

use std::fmt;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

/// TLS for the listening port: the shared configuration and the pair it serves.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Reloadable>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the pair and builds the configuration (TLS 1.2 and 1.3, no client
    /// certificates, the ring provider's safe defaults).
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_pair(files, &provider)?;
        let resolver = Arc::new(Reloadable(RwLock::new(Arc::new(key))));
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        Ok(Tls {
            files: files.clone(),
            provider,
            resolver,
            config: Arc::new(config),
        })
    }

    /// Loads the files again and, if they make a valid pair, serves it to every handshake
    /// from now on. On error the pair in use is kept and the error returned.
    pub fn reload(&self) -> Result<(), String> {
        let key = load_pair(&self.files, &self.provider)?;
        // A poisoned lock only means a reader panicked holding it; the value is whole.
        let mut slot = self.resolver.0.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(key);
        Ok(())
    }

    /// A new server-side TLS session for an accepted socket.
    pub fn accept(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(self.config.clone())
    }

    /// The files this configuration reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// The pair handshakes get, swapped by [`Tls::reload`].
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.0.read().unwrap_or_else(|e| e.into_inner());
        Some(key.clone())
    }
}

/// Reads both files and checks that the key belongs to the leaf certificate.
fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "TLS key {}: {}",
            files.key.display(),
            describe_pem_error(&e, "private key")
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "TLS pair {} + {}: {}",
            files.cert.display(),
            files.key.display(),
            describe_pair_error(&e)
        )
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let err = |e: rustls::pki_types::pem::Error| {
        format!(
            "TLS certificate {}: {}",
            path.display(),
            describe_pem_error(&e, "certificate")
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE block found",
            path.display()
        ));
    }
    Ok(chain)
}

/// Why a certificate and a key do not make a pair, in words (rustls's own text for a key
/// mismatch ends in a debug name, `KeyMismatch`).
fn describe_pair_error(e: &rustls::Error) -> String {
    use rustls::{Error, InconsistentKeys};
    match e {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the key does not belong to the certificate (it is another pair's)".into()
        }
        Error::InconsistentKeys(InconsistentKeys::Unknown) => {
            "cannot tell whether the key belongs to the certificate".into()
        }
        other => other.to_string(),
    }
}

fn describe_pem_error(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => format!("no {what} found in the file"),
        other => format!("not valid PEM ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.cert.pem()).unwrap();
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tickcast-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_pair_and_refuses_bad_ones_with_the_file_named() {
        let dir = tempdir("unit");
        let a = pair(&dir, "a");
        let b = pair(&dir, "b");
        assert!(Tls::load(&a).is_ok());
        // A key from another pair.
        let mixed = TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let e = Tls::load(&mixed).unwrap_err();
        assert!(e.contains("a.crt") && e.contains("b.key"), "{e}");
        assert!(
            e.contains("does not belong") && !e.contains("KeyMismatch"),
            "{e}"
        );
        // A missing file, a key file as the certificate, a certificate as the key.
        let missing = TlsFiles {
            cert: dir.join("nope.crt"),
            key: a.key.clone(),
        };
        assert!(Tls::load(&missing).unwrap_err().contains("nope.crt"));
        let swapped = TlsFiles {
            cert: a.key.clone(),
            key: a.cert.clone(),
        };
        let e = Tls::load(&swapped).unwrap_err();
        assert!(
            e.contains("no CERTIFICATE") || e.contains("no certificate"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reload_keeps_the_old_pair_when_the_new_files_are_bad() {
        let dir = tempdir("reload");
        let files = pair(&dir, "live");
        let tls = Tls::load(&files).unwrap();
        let before = tls.resolver.0.read().unwrap().cert[0].clone();
        std::fs::write(&files.cert, "garbage").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.resolver.0.read().unwrap().cert[0], before);
        // A new valid pair is taken.
        let fresh = pair(&dir, "fresh");
        std::fs::copy(&fresh.cert, &files.cert).unwrap();
        std::fs::copy(&fresh.key, &files.key).unwrap();
        tls.reload().unwrap();
        assert_ne!(tls.resolver.0.read().unwrap().cert[0], before);
        let _ = std::fs::remove_dir_all(dir);
    }
}
