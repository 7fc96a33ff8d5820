//! The wire: typed commands parsed at the edge, the replies and pushes they produce, and the
//! native JSON framing. Other framings (Socket.IO, the seed dialects) translate to and from
//! these same types.

mod command;
mod events;
pub mod native;

pub use command::{Command, LiveCommand, RoomCommand, SocialCommand};
pub use events::{BlockedUser, Delivery, PresenceState, Push, Reply};
