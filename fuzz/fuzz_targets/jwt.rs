//! Tokens: `Authenticator::verify` on arbitrary token text, and on tokens correctly signed
//! with the secret whose claims segment is fuzzed (raw bytes, so not only JSON), so that the
//! claim parsing past the signature check runs. A token accepted names the `sub` it carries.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::auth::Authenticator;

const SECRET: &str = "fuzzing-secret-0123456789abcdef";

fn keys() -> &'static (Authenticator, EncodingKey) {
    static KEYS: OnceLock<(Authenticator, EncodingKey)> = OnceLock::new();
    KEYS.get_or_init(|| (Authenticator::new(SECRET), EncodingKey::from_secret(SECRET.as_bytes())))
}

/// A token must name the user its claims name: `sub` is the identity, never another field.
/// The claims are read lossily: serde skips a claim it does not know without checking that
/// its string is UTF-8, so a signed token may carry bytes that strict JSON refuses.
fn check_accepted(auth: &Authenticator, token: &str, claims: &[u8]) {
    let Ok(identity) = auth.verify(token) else { return };
    let claims: Value = serde_json::from_str(&String::from_utf8_lossy(claims)).unwrap_or(Value::Null);
    assert_eq!(claims.get("sub").and_then(Value::as_str), Some(identity.user.as_str()), "accepted {token}");
}

fuzz_target!(|bytes: &[u8]| {
    let (auth, key) = keys();
    let Some((&mode, rest)) = bytes.split_first() else { return };
    match mode % 3 {
        // Any text as a token.
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                let _ = auth.verify(token);
            }
        }
        // A correctly signed HS256 token whose claims segment is the raw input.
        1 => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(rest));
            let Ok(signature) = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::HS256) else {
                return;
            };
            check_accepted(auth, &format!("{message}.{signature}"), rest);
        }
        // Claims that are JSON, encoded as an issuer would.
        _ => {
            let Ok(claims) = serde_json::from_slice::<Value>(rest) else { return };
            let Ok(token) = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key) else { return };
            check_accepted(auth, &token, rest);
        }
    }
});
