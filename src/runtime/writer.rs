//! A connection's writer: the body of its WebSocket response. The HTTP dispatcher polls it
//! whenever the socket can take more; it takes what the connection's outbox holds, encodes
//! each push for the connection's framing and API, and ends with the close frame. Nothing
//! is queued between the outbox and the dispatcher's write buffer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::{BodySize, MessageBody};
use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use actix_web::web::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::outbox::{Next, OutboxReceiver};
use super::{Outbound, RecoveryStart};
use crate::dialect::{self, Lookup};
use crate::domain::{Message, UserId};
use crate::metrics::Metrics;
use crate::service::{Services, recovery};
use crate::wire::recovery::{Positions, with_offset};
use crate::wire::{Api, Delivery, Framing, Push};

/// Encoded bytes handed to the dispatcher in one piece, at most (a larger frame goes alone).
const BATCH_BYTES: usize = 16 * 1024;
/// RFC 6455: a control frame carries at most 125 bytes; a close's are its code and reason.
const MAX_CONTROL_PAYLOAD: usize = 125;
/// How long a closing connection's socket may take to take what is queued and the close
/// frame; then the writer ends without them, and the connection with it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The response body that writes one connection's outbox to its socket.
pub struct Writer {
    receiver: OutboxReceiver,
    /// Frames encoded and not yet handed over; empty (and unallocated) when idle.
    out: BytesMut,
    /// How pushes are written; lent to `waiting` while an item waits.
    core: Option<Core>,
    waiting: Option<Waiting>,
    /// A recovered session's missed messages, written before anything else, one at a time.
    replay: VecDeque<Message>,
    phase: Phase,
    /// Armed when a close is asked for (boxed: only a closing writer holds a timer).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Dropped with the writer: the connection stops reading a socket nobody writes to.
    _done: oneshot::Sender<()>,
}

/// An item that waits on the store or a translation: it gives back the core with the frames
/// it wrote.
type Waiting = Pin<Box<dyn Future<Output = (Core, BytesMut)>>>;

enum Phase {
    Open,
    /// A close was asked for: what is queued goes out, then the close frame.
    Flushing(CloseReason),
    /// The close frame is written.
    Closed,
}

/// What the writer does next.
enum Step {
    Write(Outbound),
    Close(Option<CloseReason>),
}

/// How a connection's pushes reach the wire: its framing and, once connected, its API.
pub(super) struct Wire {
    pub(super) framing: Framing,
    /// Set when the connection registers (a Socket.IO client names its API in the connect
    /// packet, after the writer has started); no push arrives before.
    pub(super) api: Arc<OnceLock<Api>>,
    pub(super) lookup: Lookup,
    pub(super) services: Arc<Services>,
}

/// A recoverable Socket.IO connection's session as its writer keeps it.
struct Session {
    user: UserId,
    positions: Positions,
}

/// What encodes pushes, and the session it keeps between them.
struct Core {
    wire: Wire,
    metrics: Arc<Metrics>,
    recovery: Option<Session>,
}

impl Writer {
    /// The writer of `receiver`'s frames; `done` fires when it is dropped.
    pub(super) fn new(receiver: OutboxReceiver, wire: Wire, metrics: Arc<Metrics>, done: oneshot::Sender<()>) -> Self {
        Self {
            receiver,
            out: BytesMut::new(),
            core: Some(Core { wire, metrics, recovery: None }),
            waiting: None,
            replay: VecDeque::new(),
            phase: Phase::Open,
            deadline: None,
            _done: done,
        }
    }

    /// The next item to write, or the close; `None` until there is one.
    fn step(&mut self, cx: &mut Context<'_>) -> Option<Step> {
        if self.receiver.close_code() == Some(CloseCode::Again) {
            // A client too slow to read gets none of its missed messages either.
            self.replay.clear();
        }
        if let Some(message) = self.replay.pop_front() {
            if let Some(core) = &self.core {
                core.metrics.socketio_replayed.inc();
            }
            return Some(Step::Write(Outbound::Push(Arc::new(Delivery::new(Push::MessageNew { message })))));
        }
        loop {
            match &self.phase {
                Phase::Open => match self.receiver.poll_next(cx) {
                    Poll::Ready(Next::Frame(item)) => return Some(Step::Write(item)),
                    Poll::Ready(Next::Close) => {
                        self.deadline = Some(Box::pin(tokio::time::sleep(CLOSE_TIMEOUT)));
                        match self.receiver.reason() {
                            Some(reason) if reason.code != CloseCode::Again => self.phase = Phase::Flushing(reason),
                            // A client too slow to read gets nothing more than the close.
                            reason => {
                                self.receiver.discard();
                                return Some(Step::Close(reason));
                            }
                        }
                    }
                    Poll::Ready(Next::Ended) => return Some(Step::Close(None)),
                    Poll::Pending => return None,
                },
                Phase::Flushing(_) => match self.receiver.try_next() {
                    Some(item) => return Some(Step::Write(item)),
                    None => match mem::replace(&mut self.phase, Phase::Closed) {
                        Phase::Flushing(reason) => return Some(Step::Close(Some(reason))),
                        _ => return None,
                    },
                },
                Phase::Closed => return None,
            }
        }
    }

    /// Writes an item now, or starts it waiting.
    fn write(&mut self, item: Outbound) {
        if let Outbound::Recovery(start) = item {
            let RecoveryStart { user, positions, missed } = *start;
            if let Some(core) = &mut self.core {
                core.recovery = Some(Session { user, positions });
            }
            self.replay = missed.into();
            return;
        }
        let Some(mut core) = self.core.take() else { return };
        match core.write_now(item, &mut self.out) {
            None => self.core = Some(core),
            Some(delivery) => {
                self.waiting = Some(Box::pin(async move {
                    let mut out = BytesMut::new();
                    core.push(&delivery, &mut out).await;
                    (core, out)
                }));
            }
        }
    }

    fn close(&mut self, reason: Option<CloseReason>) {
        self.phase = Phase::Closed;
        let reason = reason.map(|mut reason| {
            if let Some(description) = &mut reason.description {
                truncate(description, MAX_CONTROL_PAYLOAD - 2);
            }
            reason
        });
        Parser::write_close(&mut self.out, reason, false);
    }
}

impl MessageBody for Writer {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = self.get_mut();
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            // The client took too long to take its close: it gets no more.
            return Poll::Ready(None);
        }
        while this.out.len() < BATCH_BYTES {
            if let Some(waiting) = &mut this.waiting {
                // Woken by a close while the item waits, too.
                this.receiver.register(cx);
                if this.receiver.close_code() == Some(CloseCode::Again) {
                    // Too slow to read: the waiting item is dropped with the rest.
                    this.waiting = None;
                } else {
                    let Poll::Ready((core, out)) = waiting.as_mut().poll(cx) else { break };
                    this.out.extend_from_slice(&out);
                    this.core = Some(core);
                    this.waiting = None;
                }
            }
            match this.step(cx) {
                Some(Step::Write(item)) => this.write(item),
                Some(Step::Close(reason)) => this.close(reason),
                None => break,
            }
        }
        if !this.out.is_empty() {
            // Taken whole: an idle writer keeps no buffer.
            return Poll::Ready(Some(Ok(mem::take(&mut this.out).freeze())));
        }
        match (&this.phase, &this.waiting) {
            (Phase::Closed, None) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

impl Core {
    /// Writes an item that needs neither the store nor a translation; gives back a push that
    /// does, for [`Core::push`].
    fn write_now(&mut self, item: Outbound, out: &mut BytesMut) -> Option<Arc<Delivery>> {
        match item {
            Outbound::Push(delivery) if self.waits(&delivery) => return Some(delivery),
            Outbound::Push(delivery) => {
                if self.advance(&delivery.push) {
                    self.metrics.frames_out.with_label_values(&[delivery.push.event()]).inc();
                    let text = self.wire.framing.push(&delivery);
                    let offset = self.recovery.as_mut().map(|session| session.positions.offset());
                    text_frame(out, &text, offset);
                }
            }
            Outbound::Text(frame) => {
                self.metrics.frames_out.with_label_values(&[frame.event]).inc();
                // A recoverable session's events carry its offset; its acks do not.
                let offset = match &mut self.recovery {
                    Some(session) if frame.text.starts_with("42[") => Some(session.positions.offset()),
                    _ => None,
                };
                text_frame(out, &frame.text, offset);
            }
            Outbound::Ping => Parser::write_message(out, b"", OpCode::Ping, true, false),
            Outbound::Pong(bytes) => {
                let payload = &bytes[..bytes.len().min(MAX_CONTROL_PAYLOAD)];
                Parser::write_message(out, payload, OpCode::Pong, true, false);
            }
            Outbound::Seen(delivery) => {
                self.advance(&delivery.push);
            }
            // Taken by the writer itself.
            Outbound::Recovery(_) => {}
        }
        None
    }

    /// Whether a push needs a translation, or the store to fill a gap in what the session
    /// delivered in its room.
    fn waits(&self, delivery: &Delivery) -> bool {
        if self.api().dialect().is_some() {
            return true;
        }
        let (Some(session), Push::MessageNew { message }) = (&self.recovery, &delivery.push) else { return false };
        session.positions.known(&message.room_id).is_some_and(|known| message.seq > known.saturating_add(1))
    }

    /// Records a session's `message.new` as delivered; false if it already was. Any other
    /// push, or any push without a session, is always new.
    fn advance(&mut self, push: &Push) -> bool {
        match (&mut self.recovery, push) {
            (Some(session), Push::MessageNew { message }) => session.positions.advance(message.room_id, message.seq),
            _ => true,
        }
    }

    fn api(&self) -> Api {
        self.wire.api.get().copied().unwrap_or(Api::Native)
    }

    /// A push, unless the session already delivered it; a `message.new` past a gap in what
    /// the session delivered in its room is preceded by the missing ones, read from the store.
    async fn push(&mut self, delivery: &Delivery, out: &mut BytesMut) {
        if let (Some(session), Push::MessageNew { message }) = (&self.recovery, &delivery.push) {
            let known = session.positions.known(&message.room_id);
            if known.is_some_and(|known| message.seq <= known) {
                return;
            }
            if let Some(known) = known.filter(|known| message.seq > known.saturating_add(1)) {
                let user = session.user.clone();
                for missing in recovery::gap(&self.wire.services, &user, message.room_id, known, message.seq).await {
                    let filled = Delivery::new(Push::MessageNew { message: missing });
                    if self.advance(&filled.push) {
                        self.encode(&filled, out).await;
                    }
                }
            }
        }
        if self.advance(&delivery.push) {
            self.encode(delivery, out).await;
        }
    }

    /// Encodes a push in the connection's API, each event with the session's offset when
    /// there is one.
    async fn encode(&mut self, delivery: &Delivery, out: &mut BytesMut) {
        let api = self.api();
        let Core { wire, metrics, recovery } = self;
        let Some(dialect) = api.dialect() else {
            metrics.frames_out.with_label_values(&[delivery.push.event()]).inc();
            let text = wire.framing.push(delivery);
            return text_frame(out, &text, recovery.as_mut().map(|session| session.positions.offset()));
        };
        // Boxed: the translation's lookups would otherwise size every waiting item for them.
        let translation = dialect::push(dialect, &wire.lookup, &delivery.push);
        let emits = match Box::pin(delivery.translated(dialect, translation)).await {
            Ok(emits) => emits,
            Err(err) => {
                // The client recovers a lost push from history; the connection goes on.
                tracing::warn!(error = %err, event = delivery.push.event(), "could not translate a push");
                return;
            }
        };
        for emit in emits {
            metrics.frames_out.with_label_values(&[emit.label()]).inc();
            let text = wire.framing.event(&emit.event, &emit.data);
            text_frame(out, &text, recovery.as_mut().map(|session| session.positions.offset()));
        }
    }
}

/// A text frame, its event given `offset` when there is one.
fn text_frame(out: &mut BytesMut, text: &str, offset: Option<&str>) {
    match offset {
        Some(offset) => Parser::write_message(out, with_offset(text, offset), OpCode::Text, true, false),
        None => Parser::write_message(out, text, OpCode::Text, true, false),
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max).rev().find(|&end| text.is_char_boundary(end)).unwrap_or(0);
        text.truncate(end);
    }
}
