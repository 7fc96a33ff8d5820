//! Identifiers. A `UserId` is the token's `sub`; room and live session ids are UUIDs; connection ids are
//! unique per node and never leave it except inside bus envelopes.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Error;

/// Longest user id the contract allows, in characters.
pub const MAX_USER_ID_CHARS: usize = 64;

/// The sender of the messages the app's back end posts as the system (`kind: "system"`).
pub const SYSTEM_SENDER: &str = "system";

/// What a user id may hold, as the OpenAPI document states it: 1 to 64 characters, none of
/// them a control character (Unicode category Cc, which `char::is_control` tests).
const USER_ID_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,64}$";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl utoipa::PartialSchema for UserId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_USER_ID_CHARS))
            .pattern(Some(USER_ID_PATTERN))
            .description(Some("a user id: the `sub` of the user's tokens"))
            .into()
    }
}

impl utoipa::ToSchema for UserId {}

impl UserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, Error> {
        let raw = raw.into();
        if raw.is_empty() || raw.chars().count() > MAX_USER_ID_CHARS {
            return Err(Error::bad_request(format!("user id must be 1 to {MAX_USER_ID_CHARS} characters")));
        }
        if raw.chars().any(char::is_control) {
            return Err(Error::bad_request("user id must not contain control characters"));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sender of the messages the app's back end posts as the system.
    pub fn system() -> Self {
        Self(SYSTEM_SENDER.to_owned())
    }

    /// Refuses the system's id where a person is meant: as a token's subject, a member, a
    /// sender or a user to delete, it would pass for (or wipe) the system's messages.
    pub fn person(self) -> Result<Self, Error> {
        if self.0 == SYSTEM_SENDER {
            return Err(Error::bad_request(format!("`{SYSTEM_SENDER}` is the system's id, not a user's")));
        }
        Ok(self)
    }
}

impl TryFrom<String> for UserId {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        Self::parse(raw)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Defines an id that is a time-ordered UUID (v7) on the wire as a string, parsed once at
/// the edge; `field` names it in error messages.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn parse(raw: &str) -> Result<Self, $crate::domain::Error> {
                uuid::Uuid::parse_str(raw)
                    .map(Self)
                    .map_err(|_| $crate::domain::Error::bad_request(concat!($field, " must be a UUID")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::Error;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id!(
    /// A chat room.
    RoomId,
    "room_id"
);

/// A live session (a UUID v7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        Uuid::parse_str(raw).map(Self).map_err(|_| Error::bad_request("session_id must be a UUID"))
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        Self::parse(&raw)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.to_string()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One WebSocket connection; unique across the cluster (a v4 UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(value_type = String, format = Uuid)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl ConnectionId {
    /// A connection id read back from the store.
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok().map(Self)
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// This node's name in logs, metrics, presence and bus envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn random() -> Self {
        Self(format!("node-{}", &Uuid::new_v4().simple().to_string()[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("x".repeat(65)).is_err());
        assert!(UserId::parse("x".repeat(64)).is_ok());
        assert!(UserId::parse("a\nb").is_err());
    }

    #[test]
    fn room_ids_must_be_uuids() {
        assert!(RoomId::parse("not-a-uuid").is_err());
        let id = RoomId::new();
        assert_eq!(RoomId::parse(&id.to_string()).unwrap(), id);
    }
}
