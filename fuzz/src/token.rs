//! Token verification: `tickcast::auth::Verifier::verify` on arbitrary tokens, and on tokens
//! signed with the right secret around arbitrary headers and claims.
//!
//! The first byte picks a mode:
//! - 0: the rest is the token as sent;
//! - 1: the rest is the claims, signed under the standard header;
//! - 2: the rest is a header and claims (split at the first newline), signed; and the same
//!   token with one signature byte changed, which must be refused.
//!
//! Checked, with an HMAC-SHA256 computed here, independently of the verifier: an accepted
//! token has three parts, an `HS256` header, a signature that is the secret's MAC of the
//! first two, a `sub` that is a valid client id, an integer `exp` not in the past, and the
//! rights it returns are exactly the claims' (`subscribe` defaults to the server's own
//! topics, `publish` to none), and an `exp` within the default maximum lifetime. Conversely,
//! standard-header claims that are plainly valid (only known fields, `exp` well ahead and
//! well within the maximum lifetime) must be accepted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tickcast::auth::{Rights, Verifier};
use tickcast::protocol::validate_client_id;

/// The secret every token in this target is checked against.
const SECRET: &[u8] = b"fuzz-secret";
/// The standard header.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Seconds of slack around "now" between this check and the verifier's own clock.
const SLACK: i64 = 5;

thread_local! {
    static VERIFIER: Verifier = Verifier::new(SECRET);
}

/// Runs the verifier in the mode `data[0]` picks.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                verify_checked(token);
            }
        }
        1 => {
            let token = sign(HEADER.as_bytes(), rest);
            let accepted = verify_checked(&token);
            if plainly_valid(rest) {
                assert!(
                    accepted,
                    "valid claims refused: {:?}",
                    String::from_utf8_lossy(rest)
                );
            }
        }
        _ => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (header, claims) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
            let token = sign(header, claims);
            verify_checked(&token);
            // A changed signature byte (in the middle: the last character may carry unused
            // bits) must be refused whatever the header and claims.
            let sig_at = token.rfind('.').expect("a signed token has three parts") + 5;
            let mut forged = token.into_bytes();
            forged[sig_at] = if forged[sig_at] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).expect("base64 is ASCII");
            assert!(!verify_checked(&forged), "a forged signature was accepted");
        }
    }
}

/// `header.claims.mac`, each part base64url, signed with [`SECRET`].
fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mac = mac_of(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac))
}

fn mac_of(input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("HMAC takes any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Verifies `token`; when accepted, checks it against the independent model. Returns
/// whether it was accepted.
fn verify_checked(token: &str) -> bool {
    let Ok((sub, rights)) = VERIFIER.with(|v| v.verify(Some(token))) else {
        return false;
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted {token:?}");
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .unwrap_or_else(|e| panic!("accepted a part that is not base64url: {p:?} {e}"))
    };
    let signature = decode(parts[2]);
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    assert_eq!(
        signature,
        mac_of(signing_input.as_bytes()),
        "bad MAC accepted"
    );
    // Only the fields the verifier acts on are modelled: serde skips unknown fields without
    // decoding them (they may hold invalid UTF-8 or escapes), and nothing ever reads them.
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        sub: String,
        exp: Value,
        subscribe: Option<Vec<String>>,
        publish: Option<Vec<String>>,
    }
    let header: Header = serde_json::from_slice(&decode(parts[0])).expect("accepted header");
    assert_eq!(header.alg, "HS256", "accepted a header for {}", header.alg);
    let claims: Model = serde_json::from_slice(&decode(parts[1])).expect("accepted claims");
    assert_eq!(claims.sub, sub);
    assert!(validate_client_id(&sub).is_ok(), "accepted sub {sub:?}");
    let exp = claims.exp.as_u64().expect("accepted exp is an integer");
    assert!(
        exp as i64 >= now() - SLACK,
        "accepted an expired token: {exp}"
    );
    assert!(
        exp as i64 <= now() + max_lifetime() + SLACK,
        "accepted a token past the maximum lifetime: {exp}"
    );
    let expected = Rights::granted(
        claims
            .subscribe
            .unwrap_or_else(tickcast::auth::default_subscribe),
        claims.publish.unwrap_or_default(),
        exp,
    );
    assert_eq!(rights, expected, "rights differ from the claims");
    true
}

/// Claims any verifier must take: an object of only `sub` (a valid id), `exp` (an integer
/// well ahead of now) and optional string lists `subscribe` and `publish`, each once.
fn plainly_valid(claims: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Plain {
        sub: String,
        exp: u64,
        #[serde(default)]
        subscribe: Vec<String>,
        #[serde(default)]
        publish: Vec<String>,
    }
    let Ok(plain) = serde_json::from_slice::<Plain>(claims) else {
        return false;
    };
    validate_client_id(&plain.sub).is_ok()
        && i64::try_from(plain.exp)
            .is_ok_and(|e| e > now() + SLACK && e < now() + max_lifetime() - SLACK)
}

/// The verifier's default maximum token lifetime, in seconds.
fn max_lifetime() -> i64 {
    tickcast::auth::DEFAULT_MAX_TOKEN_LIFETIME.as_secs() as i64
}
