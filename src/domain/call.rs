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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
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

    /// What the party becomes when `step` happens to them; `None` where the step does not
    /// apply in this status (accepting a call that no longer rings, say).
    pub fn after(self, step: PartyStep) -> Option<Self> {
        let (from, to) = step.moves();
        (self == from).then_some(to)
    }

    /// What the party becomes when the whole call ends for `reason`: a ringing party missed
    /// it (ring timeout) or was cancelled, a joined one left; `None` for a party already out.
    pub fn on_call_end(self, reason: EndReason) -> Option<Self> {
        match self {
            Self::Ringing if reason == EndReason::Missed => Some(Self::Missed),
            Self::Ringing => Some(Self::Cancelled),
            Self::Joined => Some(Self::Left),
            _ => None,
        }
    }
}

/// What one party of a call can do, or have happen to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyStep {
    Accept,
    Decline,
    /// Rang past the ring timeout.
    RingTimeout,
    /// A joined party hangs up or drops out.
    HangUp,
}

impl PartyStep {
    /// The status a party must be in for the step, and the status it leaves them in.
    pub fn moves(self) -> (PartyStatus, PartyStatus) {
        match self {
            Self::Accept => (PartyStatus::Ringing, PartyStatus::Joined),
            Self::Decline => (PartyStatus::Ringing, PartyStatus::Declined),
            Self::RingTimeout => (PartyStatus::Ringing, PartyStatus::Missed),
            Self::HangUp => (PartyStatus::Joined, PartyStatus::Left),
        }
    }
}

/// Whether a call ends now, given its state and its parties' statuses after a step, and why:
/// it ends once nobody can talk any more (at most one joined party and nobody ringing), or
/// when an answered call has nobody joined. `unanswered` is the reason while no callee ever
/// answered (state `ringing`), `answered` afterwards. An ended call does not end again.
pub fn ending(
    state: CallState,
    parties: impl IntoIterator<Item = PartyStatus>,
    unanswered: EndReason,
    answered: EndReason,
) -> Option<EndReason> {
    let (mut joined, mut ringing) = (0, 0);
    for status in parties {
        joined += usize::from(status == PartyStatus::Joined);
        ringing += usize::from(status == PartyStatus::Ringing);
    }
    let ends = match state {
        CallState::Ended => false,
        CallState::Ringing => ringing == 0 && joined <= 1,
        CallState::Active => (ringing == 0 && joined <= 1) || joined == 0,
    };
    ends.then_some(if state == CallState::Ringing { unanswered } else { answered })
}

/// Whether a call ends when a joined party leaves for `reason`: a call nobody answered yet
/// ends when its caller leaves (cancelled, or disconnected when they dropped out); an
/// answered one as [`ending`] says.
pub fn ending_on_leave(
    state: CallState,
    parties: impl IntoIterator<Item = PartyStatus>,
    reason: EndReason,
) -> Option<EndReason> {
    match state {
        CallState::Ringing if reason == EndReason::Disconnected => Some(EndReason::Disconnected),
        CallState::Ringing => Some(EndReason::Cancelled),
        _ => ending(state, parties, reason, reason),
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

#[cfg(test)]
mod tests {
    use super::PartyStatus::*;
    use super::*;

    #[test]
    fn a_ringing_party_accepts_declines_or_misses_and_a_joined_one_leaves() {
        assert_eq!(Ringing.after(PartyStep::Accept), Some(Joined));
        assert_eq!(Ringing.after(PartyStep::Decline), Some(Declined));
        assert_eq!(Ringing.after(PartyStep::RingTimeout), Some(Missed));
        assert_eq!(Joined.after(PartyStep::HangUp), Some(Left));
        for done in [Declined, Left, Missed, Busy, Cancelled] {
            for step in [PartyStep::Accept, PartyStep::Decline, PartyStep::RingTimeout, PartyStep::HangUp] {
                assert_eq!(done.after(step), None, "{done:?} cannot {step:?}");
            }
        }
        assert_eq!(Joined.after(PartyStep::Accept), None);
        assert_eq!(Joined.after(PartyStep::Decline), None);
    }

    #[test]
    fn when_a_call_ends_the_ringing_are_missed_or_cancelled_and_the_joined_leave() {
        assert_eq!(Ringing.on_call_end(EndReason::Missed), Some(Missed));
        assert_eq!(Ringing.on_call_end(EndReason::Hangup), Some(Cancelled));
        assert_eq!(Joined.on_call_end(EndReason::Busy), Some(Left));
        for out in [Declined, Left, Missed, Busy, Cancelled] {
            assert_eq!(out.on_call_end(EndReason::Hangup), None);
        }
    }

    #[test]
    fn a_call_ends_once_nobody_can_talk() {
        use EndReason::{Declined as D, Hangup as H};
        // Caller joined, one callee still ringing: goes on.
        assert_eq!(ending(CallState::Ringing, [Joined, Ringing], D, H), None);
        // The only callee declined: ends unanswered.
        assert_eq!(ending(CallState::Ringing, [Joined, Declined], D, H), Some(D));
        // Everyone busy at the start: ends at once.
        assert_eq!(ending(CallState::Ringing, [Joined, Busy, Busy], EndReason::Busy, H), Some(EndReason::Busy));
        // A group call with two still talking goes on after a third declines.
        assert_eq!(ending(CallState::Active, [Joined, Joined, Declined], D, H), None);
        // One left talking, nobody ringing: ends as answered.
        assert_eq!(ending(CallState::Active, [Joined, Left], D, H), Some(H));
        // Answered, one still ringing, the rest left: ends (nobody joined to talk to).
        assert_eq!(ending(CallState::Active, [Left, Left, Ringing], D, H), Some(H));
        // Answered, one joined and one ringing: goes on (the ringing one may still join).
        assert_eq!(ending(CallState::Active, [Joined, Left, Ringing], D, H), None);
        // An ended call does not end again.
        assert_eq!(ending(CallState::Ended, [Left, Left], D, H), None);
    }

    #[test]
    fn a_caller_leaving_an_unanswered_call_cancels_it() {
        let parties = [Left, Ringing];
        assert_eq!(ending_on_leave(CallState::Ringing, parties, EndReason::Hangup), Some(EndReason::Cancelled));
        let dropped = ending_on_leave(CallState::Ringing, parties, EndReason::Disconnected);
        assert_eq!(dropped, Some(EndReason::Disconnected));
        assert_eq!(ending_on_leave(CallState::Active, [Left, Joined, Joined], EndReason::Hangup), None);
        assert_eq!(ending_on_leave(CallState::Active, [Left, Joined], EndReason::Hangup), Some(EndReason::Hangup));
    }
}
