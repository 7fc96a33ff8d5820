//! The wire: typed commands parsed at the edge, the replies and pushes they produce, and the
//! native JSON framing. Other framings (Socket.IO, the seed dialects) translate to and from
//! these same types.

mod api;
mod command;
mod events;
mod framing;
pub mod native;
pub mod socketio;

pub use api::{Api, Emit};
pub(crate) use command::fields;
pub use command::{CallCommand, Command, DEFAULT_PAGE, LiveCommand, MAX_PAGE, RoomCommand, SocialCommand};
pub use events::{BlockedUser, Delivery, PresenceState, Push, Reply};
pub use framing::{AckId, Framing, Inbound};
