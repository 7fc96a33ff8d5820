//! Chat objects as clients see them, and the values a `message.send` is parsed into.

use serde::{Deserialize, Serialize};

use super::{Error, RoomId, Timestamp, UserId};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    Video,
    Audio,
    File,
    /// Written by the server only; clients cannot send it.
    System,
    /// What is left of a message whose sender's account was deleted: no body.
    Deleted,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        raw.parse().map_err(|_| Error::bad_request(format!("unknown message kind `{raw}`")))
    }

    fn is_media(self) -> bool {
        matches!(self, Self::Image | Self::Video | Self::Audio | Self::File)
    }
}

/// Media bodies point at the file: an http(s) URL, or the key an app's own upload store
/// gave it (`2eb3….png`, as the legacy apps send), which cannot smuggle in another scheme.
fn is_media_reference(body: &str) -> bool {
    body.starts_with("https://")
        || body.starts_with("http://")
        || !body.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':')
}

/// A message body a client may send: non-empty, within the size limit, and a URL for media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(kind: MessageKind, body: String, max_bytes: usize) -> Result<Self, Error> {
        if matches!(kind, MessageKind::System | MessageKind::Deleted) {
            return Err(Error::bad_request(format!("{} messages are written by the server only", kind.as_str())));
        }
        if body.chars().all(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::bad_request("body must have a visible character"));
        }
        if body.len() > max_bytes {
            return Err(Error::TooLarge(format!("body is over {max_bytes} bytes")));
        }
        if body.contains('\0') {
            return Err(Error::bad_request("body must not contain the NUL character (U+0000)"));
        }
        if kind.is_media() && !is_media_reference(&body) {
            return Err(Error::bad_request(format!(
                "a {} message's body must be an http(s) URL or a file key (no spaces, no other scheme)",
                kind.as_str()
            )));
        }
        Ok(Self(body))
    }

    /// A message the server writes itself (the server API's system messages): checked like a
    /// client's text, but of kind `system`.
    pub fn system(body: String, max_bytes: usize) -> Result<Self, Error> {
        Self::parse(MessageKind::Text, body, max_bytes)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Longest `client_id`, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// A sender's `client_id` for a message: 1 to 128 bytes, no control characters.
pub fn check_client_id(client_id: Option<&str>) -> Result<(), Error> {
    match client_id {
        Some(id) if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES || id.chars().any(char::is_control) => Err(
            Error::bad_request(format!("client_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes, no control characters")),
        ),
        _ => Ok(()),
    }
}

/// Where a `room.list` page starts: after a room the client already has (exact, even when
/// rooms share an activity time), or before an activity time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomCursor {
    AfterRoom(RoomId),
    ActiveBefore(Timestamp),
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum RoomKind {
    Direct,
    Group,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    pub room_id: RoomId,
    pub seq: i64,
    pub sender_id: UserId,
    pub kind: MessageKind,
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: Timestamp,
    /// A numeric alias of `id`, unique and increasing, for clients that need integer ids.
    pub number: i64,
}

/// The member of a direct room who is not `user` (`None` for groups).
pub fn direct_peer<'a>(kind: RoomKind, members: &'a [UserId], user: &UserId) -> Option<&'a UserId> {
    match kind {
        RoomKind::Direct => members.iter().find(|m| *m != user),
        RoomKind::Group => None,
    }
}

/// A room as one member sees it: `unread`, `last_read_seq` and `last_message` are theirs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Room {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub members: Vec<UserId>,
    pub created_by: UserId,
    pub created_at: Timestamp,
    pub last_message: Option<Message>,
    pub unread: i64,
    pub last_read_seq: i64,
    /// Highest seq in the room: a client that has less fills the gap with `message.history`.
    pub last_seq: i64,
    /// When the room last had a message (or was created): `room.list` orders and pages by it.
    pub last_activity_at: Timestamp,
    /// A numeric alias of `id`, unique, for clients that need integer ids.
    pub number: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_bodies_are_urls() {
        assert!(MessageBody::parse(MessageKind::Image, "https://x/y.png".into(), 100).is_ok());
        assert!(MessageBody::parse(MessageKind::Image, "y.png".into(), 100).is_ok());
        assert!(MessageBody::parse(MessageKind::Image, "javascript:alert(1)".into(), 100).is_err());
        assert!(MessageBody::parse(MessageKind::Image, "a cat.png".into(), 100).is_err());
        assert!(MessageBody::parse(MessageKind::Text, "  ".into(), 100).is_err());
        assert!(MessageBody::parse(MessageKind::Text, "hello".into(), 3).is_err());
        assert!(MessageBody::parse(MessageKind::System, "hi".into(), 100).is_err());
    }
}
