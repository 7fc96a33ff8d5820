//! Integration tests: each spawns a real node on port 0 and drives it with real WebSocket
//! clients, on embedded SQLite and on a real PostgreSQL (`deploy/local/test.sh` starts it).

mod abuse;
mod admission;
mod auth;
mod batching;
mod calls;
mod chat;
mod dashboard;
mod demo;
mod dialects;
mod groups;
mod helpers;
mod lifecycle;
mod limits;
mod live;
mod log_format;
mod presence;
mod server_api;
mod social;
mod socketio;
mod webhooks;
mod writer;
