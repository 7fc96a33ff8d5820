//! `chat-mix` set-up: the users of every room, connected (the room's members spread over the
//! nodes or on one node), the room created and known to every member's node.

use std::collections::HashMap;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ChatMixArgs;
use crate::client::{Connection, Frame, Inbound, Target};
use crate::scenario::SETUP_TIMEOUT;
use crate::stats::setup_bar;

/// A room and its connected members; one task drives them all.
pub(crate) struct Room {
    pub index: usize,
    pub id: String,
    pub members: Vec<Connection>,
    /// Member index of each user id.
    pub by_user: HashMap<String, usize>,
    pub crossing: bool,
}

/// Sets up every room, `connect_concurrency` users at a time (a room counts its members):
/// first the pairs, then the groups.
pub(super) async fn set_up_rooms(args: &ChatMixArgs, nodes: &[Target], run_id: &str) -> Result<Vec<RoomSetup>> {
    let room_count = args.pairs + args.groups;
    let bar = setup_bar(room_count as u64, "rooms");
    let per_room = (args.common.connect_concurrency / 3).max(1);
    let rooms = futures_util::stream::iter(0..room_count)
        .map(|r| {
            let size = if r < args.pairs { 2 } else { args.group_size };
            let crossing = nodes.len() > 1 && crossing(r, args.cross_node_share);
            let bar = &bar;
            async move {
                let room = set_up_room(nodes, run_id, r, size, crossing).await;
                bar.inc(1);
                room
            }
        })
        .buffered(per_room)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    Ok(rooms)
}

/// Whether room `r` is one of the `share` of rooms spread over the nodes (evenly interleaved).
fn crossing(r: usize, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    ((r + 1) as f64 * share).floor() > (r as f64 * share).floor()
}

/// Room `r`'s members: spread over the nodes when `crossing`, else all on one node.
async fn set_up_room(nodes: &[Target], run_id: &str, r: usize, size: usize, crossing: bool) -> Result<RoomSetup> {
    let placement: Vec<usize> =
        (0..size).map(|m| if crossing { (r + m) % nodes.len() } else { r % nodes.len() }).collect();
    set_up_room_on(nodes, run_id, r, &placement).await
}

/// Connects one room's members (member m on `nodes[placement[m]]`, all on one shared queue),
/// creates the room (direct for two members, else a group) and has every member touch it.
pub(crate) async fn set_up_room_on(nodes: &[Target], run_id: &str, r: usize, placement: &[usize]) -> Result<RoomSetup> {
    let size = placement.len();
    let (queue, mut rx) = mpsc::unbounded_channel();
    let users: Vec<String> = (0..size).map(|m| format!("lt-{run_id}-r{r}-m{m}")).collect();
    let mut members = Vec::with_capacity(size);
    // Others first, so they are online when the room appears; the creator last.
    for (m, user) in users.iter().enumerate().rev() {
        members.push(Connection::connect_shared(&nodes[placement[m]], user, SETUP_TIMEOUT, m, queue.clone()).await?);
    }
    members.reverse();
    let crossing = placement.iter().any(|&n| n != placement[0]);
    let (event, data) = if size == 2 {
        ("room.direct", json!({"user_id": users[1]}))
    } else {
        ("room.group.create", json!({"name": format!("lt {r}"), "members": &users[1..]}))
    };
    let id = members[0].send(event, data)?;
    let created = await_acks(&mut rx, &[(0, id)]).await?.remove(0);
    let Some(room_id) = created["room"]["id"].as_str().map(str::to_owned) else {
        bail!("{event} ack without room.id: {created}");
    };
    // A request in the room from every other member: its node then holds the room (and, in a
    // cluster, its subscription) before traffic starts.
    let mut pending = Vec::new();
    for (m, member) in members.iter_mut().enumerate().skip(1) {
        pending.push((m, member.send("typing", json!({"room_id": room_id, "typing": false}))?));
    }
    await_acks(&mut rx, &pending).await?;
    let by_user = users.iter().enumerate().map(|(m, u)| (u.clone(), m)).collect();
    Ok((Room { index: r, id: room_id, members, by_user, crossing }, rx))
}

/// A room ready to drive, with the queue all its members' frames arrive on.
pub(crate) type RoomSetup = (Room, mpsc::UnboundedReceiver<(usize, Inbound)>);

/// Waits for the ok acks of `(member, request id)`s on a room's queue; returns their data in
/// order. Pushes meanwhile are set-up noise and dropped.
async fn await_acks(rx: &mut mpsc::UnboundedReceiver<(usize, Inbound)>, ids: &[(usize, i64)]) -> Result<Vec<Value>> {
    let mut out: Vec<Option<Value>> = vec![None; ids.len()];
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while out.iter().any(Option::is_none) {
        let Ok(Some((m, inbound))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("set-up: no ack within {SETUP_TIMEOUT:?}");
        };
        match inbound.frame {
            Frame::Ack(a) => {
                if let Some(i) = ids.iter().position(|&(pm, id)| pm == m && id == a.id) {
                    if !a.ok {
                        bail!("set-up request failed with {}", a.error_code.as_deref().unwrap_or("?"));
                    }
                    out[i] = Some(a.data);
                }
            }
            Frame::Closed { code, reason } => bail!("set-up: closed ({code:?} {reason})"),
            _ => {}
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}
