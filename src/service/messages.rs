//! A room's own commands (send, history, read marks, clear, typing), for a member: the
//! room's actor (`runtime::room`) checks membership and runs them in its mailbox order.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Caller, Services};
use crate::bus::{BusEvent, Topic};
use crate::domain::{Error, MessageBody, RoomId};
use crate::store::{HistoryQuery, NewMessage};
use crate::wire::{Push, Reply, RoomCommand};

/// Starts one command for a member and returns its reply. A message is queued for the
/// writer before this returns, in mailbox order, so one sender's messages get increasing
/// seqs in the order they were sent. Pushes go out on the room topic once the change is
/// durable, skipping the caller's own connection (it gets the ack).
pub fn start(
    services: Arc<Services>,
    room: RoomId,
    caller: Caller,
    command: RoomCommand,
) -> BoxFuture<'static, Result<Reply, Error>> {
    let publish = move |services: &Services, push: Push| {
        services.bus.publish(Topic::Room(room), BusEvent::Push { push, skip: Some(caller.connection) })
    };
    match command {
        RoomCommand::Send { kind, body, client_id } => {
            let body = match MessageBody::parse(kind, body, services.settings.max_body_bytes) {
                Ok(body) => body,
                Err(err) => return Box::pin(async move { Err(err) }),
            };
            let stored =
                services.writer.submit(NewMessage { room, sender: caller.user.clone(), kind, body, client_id });
            Box::pin(async move {
                let stored = stored.await?;
                if !stored.duplicate {
                    publish(&services, Push::MessageNew { message: stored.message.clone() });
                }
                Ok(Reply::Message { message: stored.message })
            })
        }
        RoomCommand::History { before_seq, after_seq, limit } => Box::pin(async move {
            let query = match (before_seq, after_seq) {
                (Some(seq), _) => HistoryQuery::Before(seq),
                (None, Some(seq)) => HistoryQuery::After(seq),
                (None, None) => HistoryQuery::Newest,
            };
            let page = services.store.history(room, &caller.user, query, limit).await?;
            Ok(Reply::History { messages: page.messages, has_more: page.has_more })
        }),
        RoomCommand::MarkRead { seq } => Box::pin(async move {
            let (seq, moved) = services.store.mark_read(room, &caller.user, seq).await?;
            if moved {
                publish(&services, Push::RoomRead { room_id: room, user_id: caller.user.clone(), seq });
            }
            Ok(Reply::Read { room_id: room, seq })
        }),
        RoomCommand::Clear => Box::pin(async move {
            let (cleared_seq, read) = services.store.clear_room(room, &caller.user).await?;
            if read {
                publish(&services, Push::RoomRead { room_id: room, user_id: caller.user.clone(), seq: cleared_seq });
            }
            Ok(Reply::Cleared { room_id: room, cleared_seq })
        }),
        RoomCommand::Typing { typing } => {
            publish(&services, Push::Typing { room_id: room, user_id: caller.user.clone(), typing });
            Box::pin(async { Ok(Reply::Done) })
        }
    }
}
