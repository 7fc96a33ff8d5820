//! The connection's inbound side: each WebSocket frame, once the codec has read it, by kind —
//! text to the edge's parser, control frames answered here, and a broken frame ending the
//! connection with the close code that names it.

use std::time::Instant;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, ProtocolError};

use super::Connection;
use crate::domain::Error;
use crate::runtime::Outbound;
use crate::wire::Framing;

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        // A closing connection runs nothing more: its writer is sending the close.
        if self.outbox.is_closing() {
            return;
        }
        self.last_heard = Instant::now();
        // Every frame counts against the rate limit, pings included.
        let allowed = item.is_err() || self.within_rate();
        match item {
            Ok(AggregatedMessage::Text(text)) => {
                // A panic on a client's frame closes that connection (1011), logged; the
                // actor still stops normally, so the hub and the caps forget it.
                let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.on_text(&text, allowed, ctx);
                }));
                if handled.is_err() {
                    tracing::error!(connection = %self.id, "a frame panicked its handler; closing the connection");
                    self.outbox.close(CloseCode::Error, "server error: please reconnect");
                }
            }
            Ok(AggregatedMessage::Binary(_)) if self.framing != Framing::Native => {
                self.outbox.close(CloseCode::Unsupported, "binary packets are not supported: send JSON");
            }
            Ok(AggregatedMessage::Binary(_)) => {
                let refusal = if allowed {
                    Error::bad_request("binary frames are not supported: send JSON text frames")
                } else {
                    Error::RateLimited
                };
                self.answer(None, Err(refusal))
            }
            Ok(AggregatedMessage::Ping(bytes)) if allowed => {
                self.outbox.push(Outbound::Pong(Box::new(bytes)));
            }
            Ok(AggregatedMessage::Ping(_)) => {}
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => {
                self.outbox.close(CloseCode::Normal, "goodbye");
            }
            Err(err) => {
                let limit = self.node.settings.max_frame_bytes;
                match err {
                    ProtocolError::Io(e) if e.to_string().contains("maximum continuation size") => {
                        self.outbox.close(CloseCode::Size, &format!("message over {limit} bytes"));
                    }
                    ProtocolError::Overflow => {
                        self.outbox.close(CloseCode::Size, &format!("frame over {limit} bytes"));
                    }
                    err => {
                        tracing::debug!(connection = %self.id, error = %err, "websocket protocol error");
                        self.outbox.close(CloseCode::Protocol, "websocket protocol error");
                    }
                }
                // Nothing after a broken frame is read: the connection leaves, and its writer
                // sends what is queued and the close.
                if let Some(reading) = self.reading.take() {
                    ctx.cancel_future(reading);
                }
                ctx.stop();
            }
        }
    }

    /// The client's frames ended, or the writer is gone: the connection leaves (a writer still
    /// flushing a close goes on without it).
    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
