//! The wire: typed commands parsed at the edge, the replies and pushes they produce, and the
//! native JSON framing. Other framings (Socket.IO, the seed dialects) translate to and from
//! these same types.

mod api;
mod command;
mod events;
mod framing;
pub mod native;
mod payloads;
pub mod recovery;
mod request;
pub mod socketio;

pub use api::{Api, Dialect, Emit};
pub use command::{CallCommand, Command, LiveCommand, RoomCommand, SocialCommand};
pub use events::{BlockedUser, Delivery, PresenceState, Push, Reply};
pub use framing::{AckId, Framing, Inbound, well_formed};
pub(crate) use request::fields;
pub use request::{DEFAULT_PAGE, Event, MAX_NEARBY_KM, MAX_PAGE, Request};
