//! Tokens: JWT HS256 verified with the shared secret. Identity is the token's `sub`, never a
//! payload field. `exp` and `nbf` are checked; a user's revocation refuses every token of
//! theirs issued (`iat`) before it, and every token without `iat`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{Error, Timestamp, UserId};
use crate::store::Profile;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<String>,
}

/// Who a verified token says the caller is, and for how long.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub profile: Profile,
    /// The token's `exp`: a connection holding it is closed then unless it refreshes.
    pub expires_at: Timestamp,
    /// The token's `iat`, if it has one.
    pub issued_at: Option<Timestamp>,
}

/// Longest display name a token may carry, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest avatar reference a token may carry, in characters.
pub const MAX_AVATAR_CHARS: usize = 2048;

/// A profile claim is stored and shown to other users: bounded, and free of control
/// characters (NUL above all, which PostgreSQL cannot store).
fn profile_field(claim: &str, value: Option<String>, max_chars: usize) -> Result<Option<String>, Error> {
    match value {
        Some(text) if text.chars().count() > max_chars => {
            Err(Error::Unauthorized(format!("invalid token: `{claim}` is over {max_chars} characters")))
        }
        Some(text) if text.chars().any(char::is_control) => {
            Err(Error::Unauthorized(format!("invalid token: `{claim}` holds a control character")))
        }
        value => Ok(value),
    }
}

/// What a client is told about a token that fails verification: the library's own wording
/// stays in the server (it names algorithms and internals an attacker may probe).
fn refusal(kind: &ErrorKind) -> Error {
    let reason = match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidAlgorithm => "invalid token: HS256 expected",
        ErrorKind::MissingRequiredClaim(_) => "invalid token: `sub` and `exp` are required",
        _ => "invalid token",
    };
    Error::Unauthorized(reason.to_owned())
}

#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    /// Users whose tokens issued before the time are refused (kept current from the store).
    revoked: Arc<RwLock<HashMap<UserId, Timestamp>>>,
}

impl Authenticator {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Audiences are the app backend's business; a token carrying one is still ours.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
            revoked: Arc::default(),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| refusal(e.kind()))?;
        let claims = data.claims;
        let user = UserId::parse(claims.sub)
            .and_then(UserId::person)
            .map_err(|e| Error::Unauthorized(format!("invalid token subject: {e}")))?;
        let name = profile_field("name", claims.name, MAX_NAME_CHARS)?;
        let avatar = profile_field("avatar", claims.avatar, MAX_AVATAR_CHARS)?;
        let identity = Identity {
            user,
            profile: Profile { name, avatar },
            expires_at: seconds(claims.exp),
            issued_at: claims.iat.map(seconds),
        };
        if self.is_revoked(&identity) {
            return Err(Error::Unauthorized("token revoked".into()));
        }
        Ok(identity)
    }

    /// Whether a revocation covers this identity's token.
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        revoked.get(&identity.user).is_some_and(|before| identity.issued_at.is_none_or(|issued| issued < *before))
    }

    /// Records that `user`'s tokens issued before `before` are refused (a later revocation
    /// of the same user only moves the time forward).
    pub fn revoke(&self, user: UserId, before: Timestamp) {
        let mut revoked = self.revoked.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = revoked.entry(user).or_insert(before);
        *entry = (*entry).max(before);
    }

    /// Signs a token for `user` valid for `ttl_secs` from now (the `switchboard token`
    /// command, tests).
    pub fn mint(&self, user: &UserId, profile: &Profile, ttl_secs: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl_secs,
            iat: Some(now),
            nbf: None,
            name: profile.name.clone(),
            avatar: profile.avatar.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }
}

/// JWT times are whole seconds since the epoch.
fn seconds(secs: u64) -> Timestamp {
    Timestamp::from_millis(i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(auth: &Authenticator, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding).unwrap()
    }

    #[test]
    fn round_trips_and_rejects_other_secrets() {
        let auth = Authenticator::new("a-secret-of-enough-length");
        let user = UserId::parse("alice").unwrap();
        let profile = Profile { name: Some("Alice".into()), avatar: None };
        let token = auth.mint(&user, &profile, 60);
        let identity = auth.verify(&token).unwrap();
        assert_eq!(identity.user, user);
        assert_eq!(identity.profile, profile);
        assert!(identity.issued_at.is_some());
        let refused = Authenticator::new("another-secret-entirely").verify(&token).unwrap_err();
        assert_eq!(refused.to_string(), "invalid token signature");
    }

    #[test]
    fn honours_nbf_and_hides_library_errors() {
        let auth = Authenticator::new("a-secret-of-enough-length");
        let now = jsonwebtoken::get_current_timestamp();
        let early = signed(&auth, serde_json::json!({"sub": "a", "exp": now + 600, "nbf": now + 300}));
        assert_eq!(auth.verify(&early).unwrap_err().to_string(), "token not yet valid (nbf)");
        let expired = signed(&auth, serde_json::json!({"sub": "a", "exp": now - 600}));
        assert_eq!(auth.verify(&expired).unwrap_err().to_string(), "token expired");
        assert_eq!(auth.verify("garbage.token.here").unwrap_err().to_string(), "invalid token");
    }

    #[test]
    fn the_system_is_nobody_a_token_names() {
        let auth = Authenticator::new("a-secret-of-enough-length");
        let now = jsonwebtoken::get_current_timestamp();
        let system = signed(&auth, serde_json::json!({"sub": "system", "exp": now + 600}));
        assert!(auth.verify(&system).unwrap_err().to_string().contains("the system's id"));
    }

    #[test]
    fn a_revocation_refuses_earlier_tokens_and_tokens_without_iat() {
        let auth = Authenticator::new("a-secret-of-enough-length");
        let now = jsonwebtoken::get_current_timestamp();
        let old = signed(&auth, serde_json::json!({"sub": "bob", "exp": now + 600, "iat": now - 100}));
        let bare = signed(&auth, serde_json::json!({"sub": "bob", "exp": now + 600}));
        let fresh = signed(&auth, serde_json::json!({"sub": "bob", "exp": now + 600, "iat": now + 100}));
        assert!(auth.verify(&old).is_ok() && auth.verify(&bare).is_ok());
        auth.revoke(UserId::parse("bob").unwrap(), seconds(now));
        assert_eq!(auth.verify(&old).unwrap_err().to_string(), "token revoked");
        assert!(auth.verify(&bare).is_err());
        assert!(auth.verify(&fresh).is_ok());
    }
}
