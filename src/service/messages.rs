//! A room's own commands (send, history, read marks, clear, typing), for a member: the
//! room's actor (`runtime::room`) checks membership and runs them in its mailbox order.
//!
//! Each command has a typed function for callers that want its result (the seed dialects,
//! through [`super::in_room`]); [`start`] maps them into the native [`Reply`]. Every one does
//! its synchronous part before it returns its future, so that part happens in mailbox order.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Caller, Services};
use crate::bus::{BusEvent, Topic};
use crate::domain::{ConnectionId, Error, Message, MessageBody, MessageKind, RoomId};
use crate::store::{HistoryPage, HistoryQuery, NewMessage, OnCommit};
use crate::wire::{Push, Reply, RoomCommand};

/// Whether a block between the two members of a direct room refuses `command`: sending and
/// typing are refused; reading what is there and clearing it are not.
pub fn refused_when_blocked(command: &RoomCommand) -> bool {
    matches!(command, RoomCommand::Send { .. } | RoomCommand::Typing { .. })
}

/// Starts one command for a member and returns its native reply (see the typed functions
/// below for what each does).
pub fn start(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    command: RoomCommand,
) -> BoxFuture<'static, Result<Reply, Error>> {
    match command {
        RoomCommand::Send { kind, body, client_id } => {
            let sent = send(services, room, caller, kind, body, client_id);
            Box::pin(async move { Ok(Reply::Message { message: sent.await? }) })
        }
        RoomCommand::History { before_seq, after_seq, limit } => {
            let query = match (before_seq, after_seq) {
                (Some(seq), _) => HistoryQuery::Before(seq),
                (None, Some(seq)) => HistoryQuery::After(seq),
                (None, None) => HistoryQuery::Newest,
            };
            let page = history(services, room, caller, query, limit);
            Box::pin(async move {
                let page = page.await?;
                Ok(Reply::History { messages: page.messages, has_more: page.has_more })
            })
        }
        RoomCommand::MarkRead { seq } => {
            let read = mark_read(services, room, caller, seq);
            Box::pin(async move { Ok(Reply::Read { room_id: room, seq: read.await? }) })
        }
        RoomCommand::Clear => {
            let cleared = clear(services, room, caller);
            Box::pin(async move { Ok(Reply::Cleared { room_id: room, cleared_seq: cleared.await? }) })
        }
        RoomCommand::Typing { typing: on } => {
            let typed = typing(services, room, caller, on);
            Box::pin(async move {
                typed.await?;
                Ok(Reply::Done)
            })
        }
    }
}

/// Pushes go out on the room topic once the change is durable, skipping the caller's own
/// connection (it gets the reply).
fn publish(services: &Services, room: RoomId, caller: &Caller, push: Push) {
    services.bus.publish(Topic::Room(room), BusEvent::Push { push, skip: Some(caller.connection) })
}

/// Sends a message; the stored message (the earlier one when `client_id` repeats). It is
/// queued for the writer before this returns, in mailbox order, so one sender's messages get
/// increasing seqs in the order they were sent.
pub fn send(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    kind: MessageKind,
    body: String,
    client_id: Option<String>,
) -> BoxFuture<'static, Result<Message, Error>> {
    let body = match MessageBody::parse(kind, body, services.settings.max_body_bytes) {
        Ok(body) => body,
        Err(err) => return Box::pin(async move { Err(err) }),
    };
    let message = NewMessage { room, sender: caller.user.clone(), kind, body, client_id };
    store_and_announce(services, message, Some(caller.connection))
}

/// Queues a checked message for the writer now; the moment it is durable (and not a repeat
/// of a stored `client_id`), the writer pushes it to the room's members but `skip` and hands
/// it to the webhooks, whether or not its sender still waits. The stored message.
pub fn store_and_announce(
    services: Arc<Services>,
    message: NewMessage,
    skip: Option<ConnectionId>,
) -> BoxFuture<'static, Result<Message, Error>> {
    let room = message.room;
    let announcer = services.clone();
    let announce: OnCommit = Box::new(move |message: &Message| {
        let push = Push::MessageNew { message: message.clone() };
        announcer.bus.publish(Topic::Room(room), BusEvent::Push { push, skip });
        super::webhooks::message_sent(&announcer, message);
    });
    let stored = services.writer.submit_then(message, Some(announce));
    Box::pin(async move { Ok(stored.await?.message) })
}

/// One page of the room's history as the caller sees it, oldest first.
pub fn history(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    query: HistoryQuery,
    limit: i64,
) -> BoxFuture<'static, Result<HistoryPage, Error>> {
    Box::pin(async move { Ok(services.store.history(room, &caller.user, query, limit).await?) })
}

/// Moves the caller's read mark up to `seq` (the latest message when `None`); the mark now in
/// force. The members hear of it only when it moved.
pub fn mark_read(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    seq: Option<i64>,
) -> BoxFuture<'static, Result<i64, Error>> {
    Box::pin(async move {
        let (seq, moved) = services.store.mark_read(room, &caller.user, seq).await?;
        if moved {
            publish(&services, room, &caller, Push::RoomRead { room_id: room, user_id: caller.user.clone(), seq });
        }
        Ok(seq)
    })
}

/// Clears the room's history for the caller; the seq it is cleared up to.
pub fn clear(services: Arc<Services>, room: RoomId, caller: Caller) -> BoxFuture<'static, Result<i64, Error>> {
    Box::pin(async move {
        let Some((cleared_seq, read)) = services.store.clear_room(room, &caller.user).await? else {
            return Err(Error::forbidden("you are not a member of this room"));
        };
        if read {
            let push = Push::RoomRead { room_id: room, user_id: caller.user.clone(), seq: cleared_seq };
            publish(&services, room, &caller, push);
        }
        Ok(cleared_seq)
    })
}

/// Tells the other members the caller started or stopped typing (published at once).
pub fn typing(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    typing: bool,
) -> BoxFuture<'static, Result<(), Error>> {
    publish(&services, room, &caller, Push::Typing { room_id: room, user_id: caller.user.clone(), typing });
    Box::pin(async { Ok(()) })
}
