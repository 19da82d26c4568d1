//! The connection's edge: what arrives before the HTTP request, and who the client really is
//! behind proxies. A load balancer may open the connection with a PROXY protocol header
//! naming the client ([`proxy`]); HTTP proxies name it in `Forwarded` or `X-Forwarded-For`,
//! believed only from trusted proxies ([`forwarded`]). Both are pure parsers over bytes and
//! strings the handshake hands them; this module imports nothing from the crate.

pub mod forwarded;
pub mod proxy;
