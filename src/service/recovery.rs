//! Socket.IO connection-state recovery: a connecting client either resumes its session (its
//! pid is its user's and still recoverable, and its offset is well formed) and gets the
//! messages it missed, or opens a new one. The per-room `seq` in the store is the truth, so
//! a session resumes on any node.

use std::sync::Arc;

use crate::domain::{Message, RoomId, Timestamp, UserId};
use crate::store::{HistoryQuery, RoomPosition, StoreResult};
use crate::wire::recovery::{Baseline, Positions};

use super::Services;

/// Most messages replayed on a recovery; a client that missed more connects afresh
/// (`recovered` false) and reads history, as after any fresh connect.
pub const MAX_REPLAY: i64 = 1000;

/// Most message body bytes replayed on a recovery: the replay waits in the connection's own
/// queue, beside its outbox, so it is bounded in bytes as well as in messages.
pub const MAX_REPLAY_BYTES: usize = 1 << 20;

/// What a client asked to recover: the pid and offset from its connect packet's auth.
#[derive(Debug, Clone)]
pub struct Claim {
    pub pid: String,
    pub offset: String,
}

/// The connection's session: resumed (with what it missed, in seq order per room) or new.
#[derive(Debug)]
pub struct Recoverable {
    pub pid: String,
    pub positions: Positions,
    pub missed: Vec<Message>,
}

/// Resumes the claimed session if it may be, else opens a new one. `None` when the store
/// fails: the connection then goes on without recovery.
pub async fn resume_or_open(services: &Services, user: &UserId, claim: Option<Claim>) -> Option<Recoverable> {
    if let Some(claim) = claim {
        match resume(services, user, claim).await {
            Ok(Some(session)) => return Some(session),
            Ok(None) => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "could not resume a Socket.IO session"),
        }
    }
    match open(services, user).await {
        Ok(session) => Some(session),
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "could not open a Socket.IO session; going on without recovery");
            None
        }
    }
}

/// Lets the session go: recoverable for the configured window from now.
pub async fn release(services: &Services, pid: &str) {
    let window = services.settings.socketio_recovery();
    let expires_at = Timestamp::from_millis(Timestamp::now().millis() + window.as_millis() as i64);
    if let Err(e) = services.store.set_socketio_session_expiry(pid, Some(expires_at)).await {
        tracing::warn!(error = %e, "could not release a Socket.IO session");
    }
}

async fn open(services: &Services, user: &UserId) -> StoreResult<Recoverable> {
    let rooms = services.store.room_positions(user).await?;
    let baseline = Baseline::new(rooms.iter().map(|r| (r.room, r.last_seq)).collect());
    let pid = uuid::Uuid::new_v4().simple().to_string();
    services.store.open_socketio_session(&pid, user, &baseline.encode()).await?;
    Ok(Recoverable { pid, positions: Positions::new(Arc::new(baseline)), missed: Vec::new() })
}

/// `None` when the claim cannot be honoured: unknown or another user's pid, held by a
/// connection or past its window, a malformed offset, or more missed than [`MAX_REPLAY`]
/// messages or [`MAX_REPLAY_BYTES`]. A claim refused after the session was taken spends it
/// (the user's oldest sessions are dropped as new ones open).
async fn resume(services: &Services, user: &UserId, claim: Claim) -> StoreResult<Option<Recoverable>> {
    let store = &services.store;
    let Some(stored) = store.claim_socketio_session(&claim.pid, user).await? else { return Ok(None) };
    let Some(baseline) = Baseline::decode(&stored) else {
        tracing::error!(user = %user, "a stored Socket.IO session has a malformed baseline");
        return Ok(None);
    };
    let Some(positions) = Positions::from_offset(Arc::new(baseline), &claim.offset) else { return Ok(None) };
    let rooms = store.room_positions(user).await?;
    let gaps: Vec<(RoomPosition, i64)> = rooms
        .into_iter()
        .map(|room| (room, positions.known(&room.room).unwrap_or(0).max(room.cleared_seq)))
        .filter(|(room, from)| room.last_seq > *from)
        .collect();
    if gaps.iter().map(|(room, from)| room.last_seq - from).sum::<i64>() > MAX_REPLAY {
        return Ok(None);
    }
    let mut missed = Vec::new();
    let mut bytes = 0;
    for (room, from) in gaps {
        let page = store.history(room.room, user, HistoryQuery::After(from), room.last_seq - from).await?;
        bytes += page.messages.iter().map(|m| m.body.len()).sum::<usize>();
        if bytes > MAX_REPLAY_BYTES {
            return Ok(None);
        }
        missed.extend(page.messages);
    }
    Ok(Some(Recoverable { pid: claim.pid, positions, missed }))
}

/// The messages `user` sees in `room` between two seqs (both excluded), for a session that
/// finds a gap in what it delivered; empty if the store fails (the client then reads them from
/// history by `seq`, as after any gap).
pub async fn gap(services: &Services, user: &UserId, room: RoomId, after: i64, before: i64) -> Vec<Message> {
    let limit = (before - after).min(MAX_REPLAY);
    match services.store.history(room, user, HistoryQuery::Between(after, before), limit).await {
        Ok(page) => page.messages,
        Err(e) => {
            tracing::warn!(room = %room, error = %e, "could not fill a gap in a Socket.IO session");
            Vec::new()
        }
    }
}
