//! Which API a connection speaks, and the events a seed dialect's client receives: the
//! names the wire needs before any dialect translates anything.

use std::borrow::Cow;

use serde_json::Value;

use crate::domain::Error;

/// The API a connection speaks: the native contract or one of the seed dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Api {
    Native,
    /// `shared/seeds/000_…`: follows, dating, group chat, video calls, live sessions.
    Social,
    /// `shared/seeds/001_…`: 1:1 messenger with numeric ids.
    Messenger,
    /// `shared/seeds/002_…`: rooms by title, status and calls.
    Rooms,
}

/// A seed dialect: an API translated at the edge (every API but the native one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Social,
    Messenger,
    Rooms,
}

impl Api {
    /// The dialect this API is translated by; `None` for the native API.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Self::Native => None,
            Self::Social => Some(Dialect::Social),
            Self::Messenger => Some(Dialect::Messenger),
            Self::Rooms => Some(Dialect::Rooms),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        raw.parse()
            .map_err(|_| Error::bad_request(format!("api `{raw}` is unknown: use native, social, messenger or rooms")))
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One event for the client: a seed's listener name (or an app event's own) and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub event: Cow<'static, str>,
    pub data: Value,
}

impl Emit {
    pub fn new(event: &'static str, data: Value) -> Self {
        Self { event: Cow::Borrowed(event), data }
    }

    /// An event the app's back end named (`Push::App`).
    pub fn app(event: String, data: Value) -> Self {
        Self { event: Cow::Owned(event), data }
    }

    /// The event's name for metrics: app events share one label, whatever they are called.
    pub fn label(&self) -> &'static str {
        match self.event {
            Cow::Borrowed(name) => name,
            Cow::Owned(_) => APP_EVENT_LABEL,
        }
    }
}

/// The metrics label of every app event (`Push::App`).
pub const APP_EVENT_LABEL: &str = "app";
