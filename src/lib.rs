//! Switchboard: a horizontally scalable realtime back end for chat, calls, live sessions and
//! social apps. See README.md and docs/protocol.md.
//!
//! Layers, each importing only those above it in this list: `domain` (values and rules),
//! `wire` (requests, replies, pushes, framings), the infrastructure it runs on (`store`,
//! `bus`, `presence`, `redis_link`, `auth`, `config`, `metrics`), `service` (the use cases), `runtime` (the
//! actors) and `dialect` (the seed APIs), `http` (routes), `app` (start-up).

pub mod domain;
pub mod wire;

pub mod auth;
pub mod bus;
pub mod config;
pub mod metrics;
pub mod presence;
pub mod redis_link;
pub mod store;

pub mod service;

pub mod admission;
pub mod dialect;
pub mod runtime;

pub mod app;
pub mod http;

pub use app::{Application, ShutdownHandle};
pub use config::Settings;
