//! Calls as clients see them.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Error, RoomId, Timestamp, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallId(Uuid);

impl CallId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        Uuid::parse_str(raw).map(Self).map_err(|_| Error::bad_request("call_id must be a UUID"))
    }
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for CallId {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        Self::parse(&raw)
    }
}

impl From<CallId> for String {
    fn from(id: CallId) -> String {
        id.to_string()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    Ringing,
    Active,
    Ended,
}

impl CallState {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "ringing" => Self::Ringing,
            "active" => Self::Active,
            _ => Self::Ended,
        }
    }
}

/// Why a call (or one party's part in it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Declined,
    Missed,
    Busy,
    Cancelled,
    Disconnected,
    AnsweredElsewhere,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Declined => "declined",
            Self::Missed => "missed",
            Self::Busy => "busy",
            Self::Cancelled => "cancelled",
            Self::Disconnected => "disconnected",
            Self::AnsweredElsewhere => "answered_elsewhere",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "hangup" => Self::Hangup,
            "declined" => Self::Declined,
            "missed" => Self::Missed,
            "busy" => Self::Busy,
            "cancelled" => Self::Cancelled,
            "disconnected" => Self::Disconnected,
            "answered_elsewhere" => Self::AnsweredElsewhere,
            _ => return None,
        })
    }
}

/// One party's part in a call: `ringing`, `joined`, `declined`, `left`, `missed`, `busy`
/// or `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallParticipant {
    pub user_id: UserId,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: CallId,
    pub room_id: RoomId,
    pub caller_id: UserId,
    pub callee_ids: Vec<UserId>,
    pub media: Media,
    pub state: CallState,
    pub created_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<EndReason>,
    pub participants: Vec<CallParticipant>,
    /// Seconds between answer and end, once ended after an answer.
    pub duration_secs: Option<i64>,
}

impl Call {
    pub fn participant(&self, user: &UserId) -> Option<&CallParticipant> {
        self.participants.iter().find(|p| &p.user_id == user)
    }

    pub fn users(&self) -> impl Iterator<Item = &UserId> {
        self.participants.iter().map(|p| &p.user_id)
    }
}
