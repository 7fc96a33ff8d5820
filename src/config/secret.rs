//! Secrets among the settings: never printed, compared in constant time, and long enough to
//! resist guessing (16 bytes for the token secret, 32 for the API key and webhook secret).

use std::fmt;

/// A secret (the one that signs tokens, the one that signs webhooks); never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        if raw.len() < 16 {
            return Err("the JWT secret must be at least 16 bytes".into());
        }
        Ok(Self(raw.to_owned()))
    }
}

pub(super) fn parse_api_key(raw: &str) -> Result<Secret, String> {
    long_secret(raw, "the API key")
}

pub(super) fn parse_webhook_secret(raw: &str) -> Result<Secret, String> {
    long_secret(raw, "the webhook secret")
}

/// A secret that must hold at least 32 bytes (256 bits).
fn long_secret(raw: &str, what: &str) -> Result<Secret, String> {
    if raw.len() < 32 {
        return Err(format!("{what} must be at least 32 bytes"));
    }
    Ok(Secret(raw.to_owned()))
}
