//! Calls as clients see them.

use serde::{Deserialize, Serialize};

use super::{RoomId, Timestamp, UserId};

super::ids::uuid_id!(
    /// A call.
    CallId,
    "call_id"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CallState {
    Ringing,
    Active,
    Ended,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a call (or one party's part in it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }
}

/// Where one party stands in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum PartyStatus {
    /// A callee whose devices ring.
    Ringing,
    /// In the call (the caller from the start, a callee once they accepted).
    Joined,
    /// A callee who refused while ringing.
    Declined,
    /// Was joined, and hung up or dropped out.
    Left,
    /// Still ringing when the ring timeout came.
    Missed,
    /// Already on another call when this one started: never rang.
    Busy,
    /// Still ringing when the call ended for another reason.
    Cancelled,
}

impl PartyStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Still part of the call: pushes and signals reach them.
    pub fn in_call(self) -> bool {
        matches!(self, Self::Ringing | Self::Joined)
    }
}

/// Who started the call, and who was rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum PartyRole {
    Caller,
    Callee,
}

impl PartyRole {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One party's part in a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallParticipant {
    pub user_id: UserId,
    pub status: PartyStatus,
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
