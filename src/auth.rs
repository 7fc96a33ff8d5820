//! Tokens: JWT HS256 verified with the shared secret. Identity is the token's `sub`, never a
//! payload field.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{Error, UserId};
use crate::store::Profile;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<String>,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub profile: Profile,
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

#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // Audiences are the app backend's business; a token carrying one is still ours.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| Error::Unauthorized(format!("invalid token: {e}")))?;
        let user =
            UserId::parse(data.claims.sub).map_err(|e| Error::Unauthorized(format!("invalid token subject: {e}")))?;
        let name = profile_field("name", data.claims.name, MAX_NAME_CHARS)?;
        let avatar = profile_field("avatar", data.claims.avatar, MAX_AVATAR_CHARS)?;
        Ok(Identity { user, profile: Profile { name, avatar } })
    }

    /// Signs a token for `user` valid for `ttl_secs` (the `switchboard token` command, tests).
    pub fn mint(&self, user: &UserId, profile: &Profile, ttl_secs: u64) -> String {
        let claims = Claims {
            sub: user.to_string(),
            exp: jsonwebtoken::get_current_timestamp() + ttl_secs,
            name: profile.name.clone(),
            avatar: profile.avatar.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_secrets() {
        let auth = Authenticator::new("a-secret-of-enough-length");
        let user = UserId::parse("alice").unwrap();
        let profile = Profile { name: Some("Alice".into()), avatar: None };
        let token = auth.mint(&user, &profile, 60);
        let identity = auth.verify(&token).unwrap();
        assert_eq!(identity.user, user);
        assert_eq!(identity.profile, profile);
        assert!(Authenticator::new("another-secret-entirely").verify(&token).is_err());
    }
}
