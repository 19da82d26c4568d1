//! Authentication and authorization: signed tokens (JWT, HS256) and browser Origin checks.
//!
//! Off by default. With `--auth-secret`, every upgrade must carry a token (`?token=` or
//! `Authorization: Bearer`) signed with that secret; it is verified once, at the upgrade, and
//! what it grants is kept with the connection as [`Rights`], until `exp`: then the connection
//! is closed with 1008 "token expired" (the client reconnects with a fresh token). Claims:
//!
//! - `sub`: the client's identity; becomes its `client_id`;
//! - `exp`: expiry (seconds since the Unix epoch), required;
//! - `subscribe`: topic patterns it may subscribe to (default `["*"]`: everything);
//! - `publish`: topic patterns it may publish to (default `[]`: nothing).
//!
//! A pattern is an exact topic name, `*` (every topic), or a prefix ending in `*`
//! (`room.*` matches `room.lobby`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::metrics::HandshakeFailure;

/// A signing secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The claims tickcast reads from (and writes into) a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Identity of the client; becomes its `client_id`.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Topic patterns the client may subscribe to.
    #[serde(default = "everything")]
    pub subscribe: Vec<String>,
    /// Topic patterns the client may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

/// What one connection may do: everything (no authentication configured), or what its
/// token grants. Eight bytes per connection, and no allocation in the first case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights(Option<Box<Grants>>);

/// The topic patterns a token grants, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grants {
    subscribe: Vec<String>,
    publish: Vec<String>,
    /// The token's `exp`, seconds since the Unix epoch.
    expires_at: u64,
}

impl Rights {
    /// No authentication configured: everything is allowed.
    pub fn all() -> Self {
        Rights(None)
    }

    /// What a token's patterns grant, until `expires_at` (seconds since the Unix epoch).
    pub fn granted(subscribe: Vec<String>, publish: Vec<String>, expires_at: u64) -> Self {
        Rights(Some(Box::new(Grants {
            subscribe,
            publish,
            expires_at,
        })))
    }

    /// When these rights end (the token's `exp`, seconds since the Unix epoch); `None`
    /// without authentication.
    pub fn expires_at(&self) -> Option<u64> {
        self.0.as_ref().map(|g| g.expires_at)
    }

    /// Whether `topic` may be subscribed to (`*` itself needs the `*` pattern).
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|g| g.subscribe.iter().any(|p| matches(p, topic)))
    }

    /// Whether `topic` may be published to.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|g| g.publish.iter().any(|p| matches(p, topic)))
    }
}

/// Whether `pattern` covers `topic`. The topic `*` (subscribe to all) is only covered by `*`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if topic == "*" {
        return false;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Why a token was refused (each is counted as its own handshake failure reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the request.
    Missing,
    /// The token has expired.
    Expired,
    /// Bad signature, wrong algorithm, malformed, or missing claims.
    Invalid,
}

impl AuthError {
    /// Metric label and log reason.
    pub fn reason(self) -> HandshakeFailure {
        match self {
            AuthError::Missing => HandshakeFailure::TokenMissing,
            AuthError::Expired => HandshakeFailure::TokenExpired,
            AuthError::Invalid => HandshakeFailure::TokenInvalid,
        }
    }

    /// Body of the 401 answer.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "a token is required (?token= or Authorization: Bearer)\n",
            AuthError::Expired => "token expired\n",
            AuthError::Invalid => "invalid token\n",
        }
    }
}

/// Verifies tokens with one shared secret.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks a token and returns the identity and rights it grants.
    pub fn verify(&self, token: Option<&str>) -> Result<(String, Rights), AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        let c = data.claims;
        if crate::protocol::validate_client_id(&c.sub).is_err() {
            return Err(AuthError::Invalid);
        }
        Ok((c.sub, Rights::granted(c.subscribe, c.publish, c.exp)))
    }
}

/// Signs a token (for `tickcast token`, scripts and tests).
pub fn issue(secret: &[u8], claims: &Claims) -> Result<String, String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| e.to_string())
}

/// Claims for `sub` valid for `ttl` from now.
pub fn claims_for(
    sub: &str,
    ttl: Duration,
    subscribe: Vec<String>,
    publish: Vec<String>,
) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Claims {
        sub: sub.into(),
        exp: now + ttl.as_secs(),
        subscribe,
        publish,
    }
}

/// The token of a request: `?token=` first, else `Authorization: Bearer <token>`.
pub fn token_of<'a>(
    query_token: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Option<&'a str> {
    query_token.or_else(|| {
        let value = authorization?.trim();
        let (scheme, rest) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    })
}

/// Whether a request's `Origin` may upgrade. Requests without one (non-browser clients) and
/// every origin when the list is empty are allowed; the comparison ignores ASCII case and a
/// trailing slash.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    if allowed.is_empty() {
        return true;
    }
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    let origin = norm(origin);
    allowed.iter().any(|a| norm(a) == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "ticks"));
        assert!(matches("*", "*"));
        assert!(matches("room.*", "room.lobby"));
        assert!(!matches("room.*", "rooms"));
        assert!(!matches("room.*", "*"));
        assert!(matches("ticks", "ticks"));
        assert!(!matches("ticks", "ticks2"));
    }

    #[test]
    fn round_trip_and_rights() {
        let claims = claims_for(
            "alice",
            Duration::from_secs(60),
            vec!["ticks".into(), "room.*".into()],
            vec!["room.*".into()],
        );
        let token = issue(b"s3cret", &claims).unwrap();
        let (sub, rights) = Verifier::new(b"s3cret").verify(Some(&token)).unwrap();
        assert_eq!(sub, "alice");
        assert!(rights.may_subscribe("ticks"));
        assert!(!rights.may_subscribe("telemetry"));
        assert!(rights.may_publish("room.a"));
        assert!(!rights.may_publish("ticks"));
        assert_eq!(rights.expires_at(), Some(claims.exp));
        let all = Rights::all();
        assert!(all.may_subscribe("*") && all.may_subscribe("ticks"));
        assert!(all.may_publish("room.a"));
        assert_eq!(all.expires_at(), None);
    }

    #[test]
    fn refusals() {
        let v = Verifier::new(b"s3cret");
        assert_eq!(v.verify(None), Err(AuthError::Missing));
        assert_eq!(v.verify(Some("garbage")), Err(AuthError::Invalid));
        let forged = issue(
            b"other",
            &claims_for("eve", Duration::from_secs(60), vec![], vec![]),
        )
        .unwrap();
        assert_eq!(v.verify(Some(&forged)), Err(AuthError::Invalid));
        let mut old = claims_for("bob", Duration::ZERO, vec![], vec![]);
        old.exp -= 10;
        let expired = issue(b"s3cret", &old).unwrap();
        assert_eq!(v.verify(Some(&expired)), Err(AuthError::Expired));
    }

    #[test]
    fn bearer_and_origin() {
        assert_eq!(token_of(None, Some("Bearer abc")), Some("abc"));
        assert_eq!(token_of(Some("q"), Some("Bearer abc")), Some("q"));
        assert_eq!(token_of(None, Some("Basic abc")), None);
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&allowed, None));
        assert!(origin_allowed(&allowed, Some("https://APP.example/")));
        assert!(!origin_allowed(&allowed, Some("https://evil.example")));
        assert!(origin_allowed(&[], Some("https://evil.example")));
    }
}
