//! Switchboard: a horizontally scalable realtime back end for chat, calls, live sessions and
//! social apps. See README.md and docs/protocol.md.

pub mod actors;
pub mod admission;
pub mod app;
pub mod auth;
pub mod bus;
pub mod config;
pub mod dialect;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod store;

pub use app::{Application, ShutdownHandle};
pub use config::Settings;
