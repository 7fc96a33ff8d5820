//! Calls as clients see them.

use serde::{Deserialize, Serialize};

use super::{RoomId, Timestamp, UserId};

super::ids::uuid_id!(
    /// A call.
    CallId,
    "call_id"
);

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
