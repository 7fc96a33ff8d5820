//! What the app's back end does to users and rooms through the server API, beyond what users
//! do themselves: adding members, reading a user's unread counts, deleting a user's data.

use diesel::dsl::{count_star, insert_into};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::chat::unread_messages;
use super::rows::{MemberRow, MessageRow, RoomRow};
use super::schema::{
    blocks, like_pairs, likes, live_hands, live_sessions, live_viewers, locations, messages, notifications,
    relationship_requests, room_members, rooms, users,
};
use super::social::pair_key;
use super::{Store, StoreResult, with_conn};
use crate::domain::{LiveState, Message, MessageKind, Room, RoomId, RoomKind, Timestamp, UserId};

/// What `add_group_member` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Added,
    /// Already a member: nothing changed.
    AlreadyMember,
    NoSuchRoom,
    /// Direct rooms have their two members for good.
    Direct,
    /// The group has its most members.
    Full,
}

impl Store {
    /// Adds `user` to a group holding at most `limit` members besides its creator.
    pub async fn add_group_member(&self, room: RoomId, user: &UserId, limit: usize) -> StoreResult<JoinOutcome> {
        let id = room.to_string();
        let now = Timestamp::now().millis();
        let outcome = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                // A no-op update takes the room's row lock (PostgreSQL) or the write lock (SQLite),
                // so concurrent adds count each other's members.
                let kind: Option<String> = diesel::update(rooms::table.find(&id))
                    .set(rooms::kind.eq(rooms::kind))
                    .returning(rooms::kind)
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(kind) = kind else { return Ok(JoinOutcome::NoSuchRoom) };
                if kind == RoomKind::Direct.as_str() {
                    return Ok(JoinOutcome::Direct);
                }
                let members: Vec<String> = room_members::table
                    .filter(room_members::room_id.eq(&id))
                    .select(room_members::user_id)
                    .load(conn)
                    .await?;
                if members.iter().any(|m| m == user.as_str()) {
                    return Ok(JoinOutcome::AlreadyMember);
                }
                // The creator may have left; the cap counts everyone but one.
                if members.len() > limit {
                    return Ok(JoinOutcome::Full);
                }
                insert_into(room_members::table).values(MemberRow::new(&id, user.as_str(), now)).execute(conn).await?;
                Ok(JoinOutcome::Added)
            })
            .await?
        });
        Ok(outcome)
    }

    /// The room as the server API shows it: no member's read state (`unread` and
    /// `last_read_seq` are 0); `None` for an unknown room.
    pub async fn room_overview(&self, room: RoomId) -> StoreResult<Option<Room>> {
        let id = room.to_string();
        let found = with_conn!(self, |conn| {
            let row: Option<(RoomRow, i64)> =
                rooms::table.find(&id).select((RoomRow::as_select(), rooms::number)).first(conn).await.optional()?;
            match row {
                None => None,
                Some((row, number)) => {
                    let members: Vec<UserId> = room_members::table
                        .filter(room_members::room_id.eq(&id))
                        .order((room_members::joined_at, room_members::user_id))
                        .select(room_members::user_id)
                        .load(conn)
                        .await?;
                    let last: Option<MessageRow> = messages::table
                        .filter(messages::room_id.eq(&id))
                        .filter(messages::seq.eq(row.last_seq))
                        .select(MessageRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    Some((row, number, members, last))
                }
            }
        });
        Ok(found.map(|(row, number, members, last)| Room {
            id: row.id,
            kind: row.kind,
            name: row.name,
            members,
            created_by: row.created_by,
            created_at: Timestamp::from_millis(row.created_at),
            last_message: last.map(Message::from),
            unread: 0,
            last_read_seq: 0,
            last_seq: row.last_seq,
            last_activity_at: Timestamp::from_millis(row.last_activity_at),
            number,
        }))
    }

    /// `user`'s unread messages per room (rooms with none left out), in no set order.
    pub async fn unread_counts(&self, user: &UserId) -> StoreResult<Vec<(RoomId, i64)>> {
        let counts = with_conn!(self, copied(user), |conn| {
            let me = user.as_str();
            unread_messages!(me)
                .group_by(messages::room_id)
                .select((messages::room_id, count_star()))
                .load::<(RoomId, i64)>(conn)
                .await?
        });
        Ok(counts)
    }

    /// Removes `user`'s data: their profile, memberships, likes, follows and friend requests,
    /// blocks either way, notifications, location and live-session seats (a live session counts
    /// them no more); their messages stay
    /// as `deleted` placeholders without a body, so every room's seqs stay gapless. The rooms
    /// they were a member of.
    pub async fn delete_user(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let rooms = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let me = user.as_str();
                // A write first: SQLite takes its write lock now (waiting for it), rather than
                // failing to upgrade a read snapshot another writer has moved past.
                diesel::update(messages::table.filter(messages::sender_id.eq(me)))
                    .set((messages::kind.eq(MessageKind::Deleted.as_str()), messages::body.eq("")))
                    .execute(conn)
                    .await?;
                let rooms: Vec<RoomId> = room_members::table
                    .filter(room_members::user_id.eq(me))
                    .select(room_members::room_id)
                    .load(conn)
                    .await?;
                diesel::delete(room_members::table.filter(room_members::user_id.eq(me))).execute(conn).await?;
                let liked: Vec<(String, String)> = likes::table
                    .filter(likes::liker_id.eq(me).or(likes::likee_id.eq(me)))
                    .select((likes::liker_id, likes::likee_id))
                    .load(conn)
                    .await?;
                let pairs: Vec<String> = liked
                    .iter()
                    .filter_map(|(a, b)| {
                        Some(pair_key(&UserId::parse(a.as_str()).ok()?, &UserId::parse(b.as_str()).ok()?))
                    })
                    .collect();
                diesel::delete(like_pairs::table.filter(like_pairs::pair_key.eq_any(&pairs))).execute(conn).await?;
                diesel::delete(likes::table.filter(likes::liker_id.eq(me).or(likes::likee_id.eq(me))))
                    .execute(conn)
                    .await?;
                diesel::delete(
                    relationship_requests::table
                        .filter(relationship_requests::from_id.eq(me).or(relationship_requests::to_id.eq(me))),
                )
                .execute(conn)
                .await?;
                diesel::delete(blocks::table.filter(blocks::blocker_id.eq(me).or(blocks::blocked_id.eq(me))))
                    .execute(conn)
                    .await?;
                diesel::delete(
                    notifications::table.filter(notifications::user_id.eq(me).or(notifications::from_id.eq(me))),
                )
                .execute(conn)
                .await?;
                diesel::delete(locations::table.filter(locations::user_id.eq(me))).execute(conn).await?;
                // A live session stops counting them, as a leave does (its row locked first,
                // as joins and leaves lock it; sessions in id order).
                let watching: Vec<String> = live_viewers::table
                    .filter(live_viewers::user_id.eq(me))
                    .select(live_viewers::session_id)
                    .order(live_viewers::session_id)
                    .load(conn)
                    .await?;
                for session in &watching {
                    diesel::update(
                        live_sessions::table.find(session).filter(live_sessions::state.eq(LiveState::Live.as_str())),
                    )
                    .set(live_sessions::viewers.eq(live_sessions::viewers - 1))
                    .execute(conn)
                    .await?;
                }
                diesel::delete(live_viewers::table.filter(live_viewers::user_id.eq(me))).execute(conn).await?;
                diesel::delete(live_hands::table.filter(live_hands::user_id.eq(me))).execute(conn).await?;
                diesel::delete(users::table.filter(users::id.eq(me))).execute(conn).await?;
                Ok(rooms)
            })
            .await?
        });
        Ok(rooms)
    }
}
