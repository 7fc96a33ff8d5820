//! Live sessions as clients see them: the session, its comments and raised hands, and the
//! values a `live.create` title and a `live.comment` text are parsed into.

use serde::{Deserialize, Serialize};

use super::{Error, SessionId, Timestamp, UserId};

/// Longest session title, in characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum LiveState {
    Live,
    Ended,
}

impl LiveState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a session ended: the host ended it, or the host lost every connection for longer
/// than the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LiveEndReason {
    HostEnded,
    HostLeft,
}

impl LiveEndReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A live session. `viewers` counts distinct users who joined and have not left (the host
/// is not counted); it is frozen when the session ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSession {
    pub id: SessionId,
    pub host_id: UserId,
    pub title: String,
    pub state: LiveState,
    pub viewers: i64,
    pub created_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<LiveEndReason>,
}

impl LiveSession {
    pub fn is_live(&self) -> bool {
        self.state == LiveState::Live
    }
}

/// A stored comment. `id` is a UUID v7: ids sort by time, and `live.comments` pages by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveComment {
    pub id: String,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub text: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaisedHand {
    pub user_id: UserId,
    pub raised_at: Timestamp,
}

/// A session title: trimmed, 1 to `MAX_TITLE_CHARS` characters, one printable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTitle(String);

impl LiveTitle {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        Ok(Self(super::text::label(raw, "title", MAX_TITLE_CHARS)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A comment's text: not blank, at most `max_chars` characters, no control character but
/// line breaks and tabs; stored as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentText(String);

impl CommentText {
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, Error> {
        if raw.trim().is_empty() {
            return Err(Error::bad_request("text must not be empty"));
        }
        if raw.chars().count() > max_chars {
            return Err(Error::TooLarge(format!("text is over {max_chars} characters")));
        }
        super::text::lines_only(&raw, "text")?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(LiveTitle::parse("  Q&A  ").unwrap().as_str(), "Q&A");
        assert!(LiveTitle::parse("   ").is_err());
        assert!(LiveTitle::parse(&"x".repeat(101)).is_err());
        assert!(LiveTitle::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn comments_are_counted_in_characters() {
        assert!(CommentText::parse("hi".into(), 2).is_ok());
        assert!(CommentText::parse("ééé".into(), 3).is_ok());
        assert_eq!(CommentText::parse("abc".into(), 2).unwrap_err().code(), crate::domain::ErrorCode::TooLarge);
        assert_eq!(CommentText::parse(" \n".into(), 2).unwrap_err().code(), crate::domain::ErrorCode::BadRequest);
    }

    #[test]
    fn session_wire_shape() {
        let session = LiveSession {
            id: SessionId::new(),
            host_id: UserId::parse("host").unwrap(),
            title: "t".into(),
            state: LiveState::Ended,
            viewers: 3,
            created_at: Timestamp::from_millis(0),
            ended_at: Some(Timestamp::from_millis(1)),
            end_reason: Some(LiveEndReason::HostLeft),
        };
        let json = serde_json::to_value(&session).unwrap();
        assert_eq!(json["state"], "ended");
        assert_eq!(json["end_reason"], "host_left");
        assert_eq!(json["viewers"], 3);
        assert_eq!(serde_json::from_value::<LiveSession>(json).unwrap(), session);
    }
}
