//! Seed value types: ids that arrive as strings or numbers, ids shown as numbers where a seed shows numbers, and its time formats.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::{Error, RoomId, SessionId, Timestamp, UserId};

/// A seed field the apps send as a string or a number (`"150"` or `150`), kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loose(String);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self(s)),
            Value::Number(n) => Ok(Self(n.to_string())),
            Value::Bool(b) => Ok(Self(if b { "1" } else { "0" }.to_owned())),
            other => Err(serde::de::Error::custom(format!("expected a string or a number, got {other}"))),
        }
    }
}

impl Loose {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn user(&self) -> Result<UserId, Error> {
        UserId::parse(self.0.clone())
    }

    pub fn room(&self) -> Result<RoomId, Error> {
        RoomId::parse(&self.0)
    }

    pub fn session(&self) -> Result<SessionId, Error> {
        SessionId::parse(&self.0)
    }

    pub fn int(&self, field: &str) -> Result<i64, Error> {
        self.0.trim().parse().map_err(|_| Error::bad_request(format!("`{field}` must be an integer")))
    }

    pub fn float(&self, field: &str) -> Result<f64, Error> {
        self.0.trim().parse().map_err(|_| Error::bad_request(format!("`{field}` must be a number")))
    }

    /// `1`/`"1"`/`true` or `0`/`"0"`/`false`.
    pub fn flag(&self, field: &str) -> Result<bool, Error> {
        match self.0.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(Error::bad_request(format!("`{field}` must be 1 or 0"))),
        }
    }
}

/// A user id as a seed that shows numeric ids expects it: a number when the id is one
/// (`"8"` → `8`), the string otherwise (a native user's `"alice"`).
pub fn numeric(user: &UserId) -> Value {
    match user.as_str().parse::<i64>() {
        Ok(n) if n.to_string() == user.as_str() => Value::from(n),
        _ => Value::from(user.as_str()),
    }
}

pub fn unix_secs(at: Timestamp) -> i64 {
    at.millis().div_euclid(1000)
}

/// `YYYY-MM-DD HH:mm`, UTC: the rooms seed's date format.
pub fn minutes(at: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at.millis())
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_numbers_only_when_canonical() {
        assert_eq!(numeric(&UserId::parse("150").unwrap()), Value::from(150));
        assert_eq!(numeric(&UserId::parse("0150").unwrap()), Value::from("0150"));
        assert_eq!(numeric(&UserId::parse("alice").unwrap()), Value::from("alice"));
    }

    #[test]
    fn loose_fields_take_strings_and_numbers() {
        let parsed: Loose = serde_json::from_value(Value::from(150)).unwrap();
        assert_eq!(parsed.as_str(), "150");
        let parsed: Loose = serde_json::from_value(Value::from("1")).unwrap();
        assert!(parsed.flag("status").unwrap());
        assert!(serde_json::from_value::<Loose>(Value::Null).is_err());
    }

    #[test]
    fn formats_minutes_in_utc() {
        assert_eq!(minutes(Timestamp::from_millis(0)), "1970-01-01 00:00");
    }
}
