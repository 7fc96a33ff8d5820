//! Webhook event types and outbox states: closed sets, named once here for the settings, the
//! outbox rows and the bodies the app's back end receives.

use std::collections::BTreeSet;

use super::Error;

/// What a webhook announces; its name is the body's `type`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr, strum::EnumString, strum::EnumIter,
)]
pub enum EventType {
    /// A message reached a room member with no live connection anywhere (collapsed).
    #[strum(serialize = "message.offline")]
    MessageOffline,
    #[strum(serialize = "follow.request")]
    FollowRequest,
    #[strum(serialize = "match.created")]
    MatchCreated,
    #[strum(serialize = "call.missed")]
    CallMissed,
    #[strum(serialize = "report.created")]
    ReportCreated,
    #[strum(serialize = "user.online")]
    UserOnline,
    #[strum(serialize = "user.offline")]
    UserOffline,
}

impl EventType {
    /// The types sent when `SWITCHBOARD_WEBHOOK_EVENTS` is not set: all but presence, which
    /// is chatty and opt-in.
    pub const DEFAULT_LIST: &str = "message.offline,follow.request,match.created,call.missed,report.created";

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        raw.trim().parse().map_err(|_| {
            let known: Vec<&str> = <Self as strum::IntoEnumIterator>::iter().map(Self::as_str).collect();
            Error::bad_request(format!("unknown webhook event `{}` (known: {})", raw.trim(), known.join(", ")))
        })
    }

    /// A comma-separated list of types; empty items are skipped, unknown names refused.
    pub fn parse_list(raw: &str) -> Result<BTreeSet<Self>, Error> {
        raw.split(',').filter(|item| !item.trim().is_empty()).map(Self::parse).collect()
    }
}

/// Where an outbox row stands: waiting for (another) attempt, delivered, or given up on after
/// the last attempt (kept for the server API to list and retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum OutboxState {
    Pending,
    Delivered,
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for event in EventType::iter() {
            assert_eq!(EventType::parse(event.as_str()).ok(), Some(event));
        }
        assert!(EventType::parse("message.new").is_err());
        assert!(EventType::parse_list("follow.request, user.typo").is_err());
        let picked = EventType::parse_list(" user.online ,,call.missed").expect("known names");
        assert_eq!(picked.into_iter().collect::<Vec<_>>(), [EventType::CallMissed, EventType::UserOnline]);
    }

    #[test]
    fn the_default_list_is_everything_but_presence() {
        let defaults = EventType::parse_list(EventType::DEFAULT_LIST).expect("known names");
        let expected: BTreeSet<EventType> =
            EventType::iter().filter(|e| !matches!(e, EventType::UserOnline | EventType::UserOffline)).collect();
        assert_eq!(defaults, expected);
    }
}
