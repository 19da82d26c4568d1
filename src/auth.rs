//! Authentication and authorization: signed tokens (JWT, HS256) and browser Origin checks.
//!
//! Off by default. With `--auth-secret`, every upgrade must carry a token (`?token=` or
//! `Authorization: Bearer`) signed with that secret; it is verified once, at the upgrade, and
//! what it grants is kept with the connection as [`Rights`], until `exp`: then the connection
//! is closed with 1008 "token expired" (the client reconnects with a fresh token). Claims:
//!
//! - `sub`: the client's identity; becomes its `client_id`;
//! - `exp`: expiry (seconds since the Unix epoch), required, and at most the verifier's
//!   maximum lifetime (`--max-token-lifetime`) from now and from `iat`;
//! - `nbf`: not before (seconds since the Unix epoch), optional: refused until then;
//! - `iat`: issued at (seconds since the Unix epoch), optional;
//! - `subscribe`: topic patterns it may subscribe to (default: the server's own topics,
//!   [`crate::protocol::SERVER_TOPICS`], and no room; `["*"]` grants everything);
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
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Topic patterns the client may subscribe to; `None` (no claim) grants the server's
    /// own topics only (see [`default_subscribe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Topic patterns the client may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
}

/// What a token without a `subscribe` claim may subscribe to: the server's own topics
/// (`ticks`, `telemetry`), and no room. A room, and `*`, must be named by the claim: a token
/// issued for one purpose must not see every room's messages and presence.
pub fn default_subscribe() -> Vec<String> {
    crate::protocol::SERVER_TOPICS
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Default longest lifetime of a token (`exp` from now, or from `iat`): 24 hours.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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
    /// The token's `exp` lies further ahead than the maximum lifetime (from now or from
    /// `iat`); counted and answered as an expired token.
    TooLong,
    /// The token's `nbf` has not come yet.
    NotYetValid,
    /// Bad signature, wrong algorithm, malformed, or missing claims.
    Invalid,
}

impl AuthError {
    /// Metric label and log reason.
    pub fn reason(self) -> HandshakeFailure {
        match self {
            AuthError::Missing => HandshakeFailure::TokenMissing,
            AuthError::Expired | AuthError::TooLong => HandshakeFailure::TokenExpired,
            AuthError::NotYetValid => HandshakeFailure::TokenNotYetValid,
            AuthError::Invalid => HandshakeFailure::TokenInvalid,
        }
    }

    /// Body of the 401 answer.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "a token is required (?token= or Authorization: Bearer)\n",
            AuthError::Expired => "token expired\n",
            AuthError::TooLong => "token expired (lifetime longer than the server allows)\n",
            AuthError::NotYetValid => "token not yet valid\n",
            AuthError::Invalid => "invalid token\n",
        }
    }
}

/// Verifies tokens with one shared secret.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Longest `exp` accepted, in seconds after now (and after `iat` when present).
    max_lifetime: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`, with the default maximum lifetime
    /// ([`DEFAULT_MAX_TOKEN_LIFETIME`]).
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // No clock leeway, for `exp` and `nbf` alike.
        validation.leeway = 0;
        validation.validate_nbf = true;
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME.as_secs(),
        }
    }

    /// The same verifier, refusing tokens whose `exp` is more than `max` from now or from
    /// their `iat` (`--max-token-lifetime`).
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max.as_secs();
        self
    }

    /// Checks a token and returns the identity and rights it grants.
    pub fn verify(&self, token: Option<&str>) -> Result<(String, Rights), AuthError> {
        self.verify_at(token, unix_now())
    }

    /// [`Verifier::verify`], with the lifetime checked against `now` (seconds since the
    /// Unix epoch); `exp` and `nbf` are checked against the system clock.
    pub fn verify_at(&self, token: Option<&str>, now: u64) -> Result<(String, Rights), AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid,
            },
        )?;
        let c = data.claims;
        if crate::protocol::validate_client_id(&c.sub).is_err() {
            return Err(AuthError::Invalid);
        }
        let from_now = c.exp.saturating_sub(now);
        let from_iat = c.iat.map_or(0, |iat| c.exp.saturating_sub(iat));
        if from_now > self.max_lifetime || from_iat > self.max_lifetime {
            return Err(AuthError::TooLong);
        }
        let subscribe = c.subscribe.unwrap_or_else(default_subscribe);
        Ok((c.sub, Rights::granted(subscribe, c.publish, c.exp)))
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
    let now = unix_now();
    Claims {
        sub: sub.into(),
        exp: now + ttl.as_secs(),
        nbf: None,
        iat: Some(now),
        subscribe: Some(subscribe),
        publish,
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        old.iat = None;
        let expired = issue(b"s3cret", &old).unwrap();
        assert_eq!(v.verify(Some(&expired)), Err(AuthError::Expired));
    }

    #[test]
    fn nbf_lifetime_and_default_rights() {
        let v = Verifier::new(b"s3cret").with_max_lifetime(Duration::from_secs(3600));
        let mut early = claims_for("bob", Duration::from_secs(60), vec![], vec![]);
        early.nbf = Some(early.exp);
        let early = issue(b"s3cret", &early).unwrap();
        assert_eq!(v.verify(Some(&early)), Err(AuthError::NotYetValid));
        let long = claims_for("bob", Duration::from_secs(7200), vec![], vec![]);
        let long = issue(b"s3cret", &long).unwrap();
        assert_eq!(v.verify(Some(&long)), Err(AuthError::TooLong));
        assert_eq!(AuthError::TooLong.reason(), HandshakeFailure::TokenExpired);
        let mut old_iat = claims_for("bob", Duration::from_secs(60), vec![], vec![]);
        old_iat.iat = Some(old_iat.exp - 3601);
        let old_iat = issue(b"s3cret", &old_iat).unwrap();
        assert_eq!(v.verify(Some(&old_iat)), Err(AuthError::TooLong));
        let mut bare = claims_for("bob", Duration::from_secs(60), vec![], vec![]);
        bare.subscribe = None;
        let bare = issue(b"s3cret", &bare).unwrap();
        let (_, rights) = v.verify(Some(&bare)).unwrap();
        assert!(rights.may_subscribe("ticks") && rights.may_subscribe("telemetry"));
        assert!(!rights.may_subscribe("room.lobby") && !rights.may_subscribe("*"));
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
