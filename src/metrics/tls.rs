//! The counters of native TLS (`--tls-cert`) and of the edge in front of the HTTP request:
//! completed TLS handshakes, TLS errors on open connections, certificate reloads, and the
//! client addresses taken from a trusted proxy. Failed handshakes are counted with the other
//! handshake failures (`tickcast_handshake_failures_total{reason="tls"}`, `"plain_on_tls"`,
//! `"bad_proxy_header"`, `"proxy_untrusted"`). Every counter is touched per connection or
//! per reload, never per message.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The result of a certificate reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok`, or `failed` (the old pair kept).
    pub result: &'static str,
}

/// Counters of TLS and of the proxies in front of the server.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// TLS handshakes completed.
    pub handshakes: Counter,
    /// TLS errors on connections past their handshake (bad records, unexpected messages).
    pub errors: Counter,
    /// Certificate reloads (SIGHUP), by result.
    pub reloads: Family<ReloadLabel, Counter>,
    /// Connections whose client address came from a PROXY header.
    pub proxied: Counter,
    /// Upgrades whose client address came from `X-Forwarded-For` or `Forwarded`.
    pub forwarded: Counter,
}

impl TlsMetrics {
    /// Registers the counters under their exported names; both reload results have their
    /// series from the first scrape.
    pub fn register(&self, r: &mut Registry) {
        for result in ["ok", "failed"] {
            let _ = self.reloads.get_or_create(&ReloadLabel { result });
        }
        r.register(
            "tls_handshakes",
            "TLS handshakes completed",
            self.handshakes.clone(),
        );
        r.register(
            "tls_errors",
            "TLS errors on connections past their handshake (the connection is dropped)",
            self.errors.clone(),
        );
        r.register(
            "tls_reloads",
            "Certificate reloads on SIGHUP, by result (failed keeps the old pair)",
            self.reloads.clone(),
        );
        r.register(
            "proxy_protocol_clients",
            "Connections whose client address came from a trusted proxy's PROXY header",
            self.proxied.clone(),
        );
        r.register(
            "forwarded_clients",
            "Upgrades whose client address came from a trusted proxy's X-Forwarded-For or \
             Forwarded header",
            self.forwarded.clone(),
        );
    }
}
