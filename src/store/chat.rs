//! Rooms, membership, history and read state.

use std::collections::HashMap;

use diesel::dsl::{count_star, insert_into};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::rows::{MemberRow, MessageRow, RoomRow};
use super::schema::{messages, room_members, rooms};
use super::{Store, StoreResult, with_conn};
use crate::domain::{Message, Room, RoomCursor, RoomId, RoomKind, Timestamp, UserId};

/// A room's kind and full member list: what a room actor caches to check every event.
#[derive(Debug, Clone)]
pub struct RoomMembers {
    pub id: RoomId,
    pub kind: RoomKind,
    pub members: Vec<UserId>,
    pub last_seq: i64,
    /// The room's numeric alias.
    pub number: i64,
}

/// What `leave_group` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    Left,
    NoSuchRoom,
    NotMember,
    /// Direct rooms cannot be left.
    Direct,
}

/// Which page of history to read; at most one cursor.
#[derive(Debug, Clone, Copy)]
pub enum HistoryQuery {
    Newest,
    Before(i64),
    After(i64),
    /// After the first seq and before the second, oldest first.
    Between(i64, i64),
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// The messages `$user` has not read in their rooms: above their read mark and their clear
/// mark, from others. Every unread count counts these.
macro_rules! unread_messages {
    ($user:expr) => {
        messages::table
            .inner_join(
                room_members::table
                    .on(room_members::room_id.eq(messages::room_id).and(room_members::user_id.eq($user))),
            )
            .filter(messages::seq.gt(room_members::last_read_seq))
            .filter(messages::seq.gt(room_members::cleared_seq))
            .filter(messages::sender_id.ne($user))
    };
}
pub(super) use unread_messages;

diesel::define_sql_function!(fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::BigInt>, y: diesel::sql_types::BigInt) -> diesel::sql_types::BigInt);

/// The one direct room of a pair is found by this key, whoever opens it first.
pub(super) fn direct_key(a: &UserId, b: &UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    serde_json::json!([lo.as_str(), hi.as_str()]).to_string()
}

impl Store {
    /// Returns the direct room of `a` and `b`, creating it on first use, and whether it was
    /// created now. Safe under concurrent openers on any node (unique `direct_key`).
    pub async fn open_direct_room(&self, a: &UserId, b: &UserId) -> StoreResult<(RoomId, bool)> {
        let key = direct_key(a, b);
        let now = Timestamp::now().millis();
        let fresh = RoomId::new();
        let (id, created) = with_conn!(self, copied(a, b), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let inserted = insert_into(rooms::table)
                    .values(RoomRow {
                        id: fresh,
                        kind: RoomKind::Direct,
                        name: None,
                        created_by: a.clone(),
                        created_at: now,
                        last_seq: 0,
                        last_activity_at: now,
                        direct_key: Some(key.clone()),
                    })
                    .on_conflict(rooms::direct_key)
                    .do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 1 {
                    for member in [a, b] {
                        insert_into(room_members::table)
                            .values(MemberRow::new(&fresh.to_string(), member.as_str(), now))
                            .execute(conn)
                            .await?;
                    }
                    return Ok((fresh, true));
                }
                let id: RoomId = rooms::table.filter(rooms::direct_key.eq(&key)).select(rooms::id).first(conn).await?;
                Ok((id, false))
            })
            .await?
        });
        Ok((id, created))
    }

    /// Creates a group room; `members` excludes the creator and is already validated.
    pub async fn create_group_room(&self, creator: &UserId, name: &str, members: &[UserId]) -> StoreResult<RoomId> {
        let now = Timestamp::now().millis();
        let id = RoomId::new();
        let room = RoomRow {
            id,
            kind: RoomKind::Group,
            name: Some(name.to_owned()),
            created_by: creator.clone(),
            created_at: now,
            last_seq: 0,
            last_activity_at: now,
            direct_key: None,
        };
        let member_rows: Vec<MemberRow> = std::iter::once(creator)
            .chain(members)
            .map(|user| MemberRow::new(&id.to_string(), user.as_str(), now))
            .collect();
        with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                insert_into(rooms::table).values(room.clone()).execute(conn).await?;
                for member in &member_rows {
                    insert_into(room_members::table).values(member.clone()).execute(conn).await?;
                }
                Ok(())
            })
            .await?
        });
        Ok(id)
    }

    /// Takes `user` out of a group room. The room, its messages and the other members'
    /// marks stay; a group nobody is left in keeps its history.
    pub async fn leave_group(&self, room: RoomId, user: &UserId) -> StoreResult<LeaveOutcome> {
        let id = room.to_string();
        let outcome = with_conn!(self, copied(user), |conn| {
            let me = user.as_str();
            let found: Option<(String, Option<String>)> = rooms::table
                .left_join(
                    room_members::table.on(room_members::room_id.eq(rooms::id).and(room_members::user_id.eq(me))),
                )
                .filter(rooms::id.eq(&id))
                .select((rooms::kind, room_members::user_id.nullable()))
                .first(conn)
                .await
                .optional()?;
            match found {
                None => LeaveOutcome::NoSuchRoom,
                Some((_, None)) => LeaveOutcome::NotMember,
                Some((kind, Some(_))) if kind == RoomKind::Direct.as_str() => LeaveOutcome::Direct,
                Some(_) => {
                    let left = diesel::delete(room_members::table.find((&id, me))).execute(conn).await?;
                    // Zero: a leave of the same user on another connection came first.
                    if left == 1 { LeaveOutcome::Left } else { LeaveOutcome::NotMember }
                }
            }
        });
        Ok(outcome)
    }

    /// The room's kind and members, or `None` for an unknown room.
    pub async fn room_members(&self, room: RoomId) -> StoreResult<Option<RoomMembers>> {
        let id = room.to_string();
        let (row, members) = with_conn!(self, |conn| {
            let row: Option<(RoomRow, i64)> =
                rooms::table.find(&id).select((RoomRow::as_select(), rooms::number)).first(conn).await.optional()?;
            let members: Vec<UserId> = room_members::table
                .filter(room_members::room_id.eq(&id))
                .order(room_members::user_id)
                .select(room_members::user_id)
                .load(conn)
                .await?;
            (row, members)
        });
        Ok(row.map(|(row, number)| RoomMembers { id: room, kind: row.kind, members, last_seq: row.last_seq, number }))
    }

    /// `room_members` for a batch of rooms (one statement for the rooms, one for their
    /// members); an unknown room is absent.
    pub async fn room_members_many(&self, ids: &[RoomId]) -> StoreResult<HashMap<RoomId, RoomMembers>> {
        let keys: Vec<String> = ids.iter().map(RoomId::to_string).collect();
        let (found, members) = with_conn!(self, |conn| {
            let found: Vec<(RoomRow, i64)> = rooms::table
                .filter(rooms::id.eq_any(&keys))
                .select((RoomRow::as_select(), rooms::number))
                .load(conn)
                .await?;
            let members: Vec<(RoomId, UserId)> = room_members::table
                .filter(room_members::room_id.eq_any(&keys))
                .order((room_members::room_id, room_members::user_id))
                .select((room_members::room_id, room_members::user_id))
                .load(conn)
                .await?;
            (found, members)
        });
        let mut by_room: HashMap<RoomId, Vec<UserId>> = HashMap::new();
        for (room, member) in members {
            by_room.entry(room).or_default().push(member);
        }
        Ok(found
            .into_iter()
            .map(|(row, number)| {
                let id = row.id;
                let members = by_room.remove(&id).unwrap_or_default();
                (id, RoomMembers { id, kind: row.kind, members, last_seq: row.last_seq, number })
            })
            .collect())
    }

    /// Every room `user` belongs to, for subscribing their node to them.
    pub async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        Ok(with_conn!(self, copied(user), |conn| {
            room_members::table
                .filter(room_members::user_id.eq(user.as_str()))
                .select(room_members::room_id)
                .load(conn)
                .await?
        }))
    }

    /// The user's peers in direct rooms: who sees their presence.
    pub async fn direct_peers(&self, user: &UserId) -> StoreResult<Vec<(RoomId, UserId)>> {
        Ok(with_conn!(self, copied(user), |conn| {
            let mine: Vec<String> = room_members::table
                .inner_join(rooms::table)
                .filter(room_members::user_id.eq(user.as_str()))
                .filter(rooms::kind.eq(RoomKind::Direct.as_str()))
                .select(room_members::room_id)
                .load(conn)
                .await?;
            room_members::table
                .filter(room_members::room_id.eq_any(mine))
                .filter(room_members::user_id.ne(user.as_str()))
                .select((room_members::room_id, room_members::user_id))
                .load(conn)
                .await?
        }))
    }

    /// `rooms_of` for a batch of users, in one statement; a user without rooms is absent.
    pub async fn rooms_of_many(&self, users: &[UserId]) -> StoreResult<HashMap<UserId, Vec<RoomId>>> {
        let keys: Vec<String> = users.iter().map(UserId::to_string).collect();
        let pairs: Vec<(UserId, RoomId)> = with_conn!(self, |conn| {
            room_members::table
                .filter(room_members::user_id.eq_any(&keys))
                .select((room_members::user_id, room_members::room_id))
                .load(conn)
                .await?
        });
        let mut rooms: HashMap<UserId, Vec<RoomId>> = HashMap::new();
        for (user, room) in pairs {
            rooms.entry(user).or_default().push(room);
        }
        Ok(rooms)
    }

    /// `direct_peers` for a batch of users, in one statement: every member of the direct
    /// rooms any of them is in, paired up here. A user without peers is absent.
    pub async fn direct_peers_many(&self, users: &[UserId]) -> StoreResult<HashMap<UserId, Vec<(RoomId, UserId)>>> {
        let keys: Vec<String> = users.iter().map(UserId::to_string).collect();
        let members: Vec<(RoomId, UserId)> = with_conn!(self, |conn| {
            let mine = diesel::alias!(room_members as mine);
            let theirs =
                mine.filter(mine.field(room_members::user_id).eq_any(&keys)).select(mine.field(room_members::room_id));
            room_members::table
                .inner_join(rooms::table)
                .filter(rooms::kind.eq(RoomKind::Direct.as_str()))
                .filter(room_members::room_id.eq_any(theirs))
                .select((room_members::room_id, room_members::user_id))
                .load(conn)
                .await?
        });
        let mut by_room: HashMap<RoomId, Vec<UserId>> = HashMap::new();
        for (room, member) in members {
            by_room.entry(room).or_default().push(member);
        }
        let asked: std::collections::HashSet<&UserId> = users.iter().collect();
        let mut peers: HashMap<UserId, Vec<(RoomId, UserId)>> = HashMap::new();
        for (room, members) in &by_room {
            for me in members.iter().filter(|m| asked.contains(m)) {
                let mine = peers.entry(me.clone()).or_default();
                for peer in members.iter().filter(|m| *m != me) {
                    mine.push((*room, peer.clone()));
                }
            }
        }
        Ok(peers)
    }

    /// One room as `viewer` sees it, or `None` if unknown or `viewer` is not a member.
    pub async fn room_for(&self, room: RoomId, viewer: &UserId) -> StoreResult<Option<Room>> {
        let page = self.load_rooms(viewer, RoomFilter::One(room)).await?;
        Ok(page.and_then(|rooms| rooms.into_iter().next()))
    }

    /// The viewer's rooms, newest activity first (ties by id), starting after `before`;
    /// `None` when `before` is a room the viewer is not a member of (unknown, someone
    /// else's, or left), which would otherwise reveal when that room was last active.
    pub async fn list_rooms(
        &self,
        viewer: &UserId,
        limit: i64,
        before: Option<RoomCursor>,
    ) -> StoreResult<Option<Vec<Room>>> {
        self.load_rooms(viewer, RoomFilter::Page { limit, before }).await
    }

    async fn load_rooms(&self, viewer: &UserId, filter: RoomFilter) -> StoreResult<Option<Vec<Room>>> {
        let loaded = with_conn!(self, copied(viewer), |conn| {
            let me = viewer.as_str();
            let mut query = room_members::table
                .inner_join(rooms::table)
                .filter(room_members::user_id.eq(me))
                .select((RoomRow::as_select(), MemberRow::as_select(), rooms::number))
                .order((rooms::last_activity_at.desc(), rooms::id.desc()))
                .into_boxed();
            match filter {
                RoomFilter::One(room) => query = query.filter(rooms::id.eq(room.to_string())),
                RoomFilter::Page { limit, before } => {
                    match before {
                        None => {}
                        Some(RoomCursor::ActiveBefore(at)) => {
                            query = query.filter(rooms::last_activity_at.lt(at.millis()));
                        }
                        Some(RoomCursor::AfterRoom(room)) => {
                            let id = room.to_string();
                            let at: Option<i64> = room_members::table
                                .inner_join(rooms::table)
                                .filter(room_members::room_id.eq(&id))
                                .filter(room_members::user_id.eq(me))
                                .select(rooms::last_activity_at)
                                .first(conn)
                                .await
                                .optional()?;
                            let Some(at) = at else {
                                return Ok(None);
                            };
                            query = query.filter(
                                rooms::last_activity_at.lt(at).or(rooms::last_activity_at.eq(at).and(rooms::id.lt(id))),
                            );
                        }
                    }
                    query = query.limit(limit);
                }
            }
            let page: Vec<(RoomRow, MemberRow, i64)> = query.load(conn).await?;
            let ids: Vec<String> = page.iter().map(|(room, _, _)| room.id.to_string()).collect();
            let members: Vec<(RoomId, UserId)> = room_members::table
                .filter(room_members::room_id.eq_any(&ids))
                .order((room_members::room_id, room_members::joined_at, room_members::user_id))
                .select((room_members::room_id, room_members::user_id))
                .load(conn)
                .await?;
            let last: Vec<MessageRow> = messages::table
                .inner_join(rooms::table.on(messages::room_id.eq(rooms::id).and(messages::seq.eq(rooms::last_seq))))
                .filter(rooms::id.eq_any(&ids))
                .select(MessageRow::as_select())
                .load(conn)
                .await?;
            let unread: Vec<(RoomId, i64)> = unread_messages!(me)
                .filter(messages::room_id.eq_any(&ids))
                .group_by(messages::room_id)
                .select((messages::room_id, count_star()))
                .load(conn)
                .await?;
            Some((page, members, last, unread))
        });
        Ok(loaded.map(|(page, members, last, unread)| assemble_rooms(page, members, last, unread)))
    }

    /// A page of history as `viewer` sees it (nothing at or below their `cleared_seq`).
    pub async fn history(
        &self,
        room: RoomId,
        viewer: &UserId,
        query: HistoryQuery,
        limit: i64,
    ) -> StoreResult<HistoryPage> {
        self.history_page(room, Some(viewer.clone()), query, limit).await
    }

    /// A page of the room's whole history, whoever cleared what (the server API's view).
    pub async fn room_history(&self, room: RoomId, query: HistoryQuery, limit: i64) -> StoreResult<HistoryPage> {
        self.history_page(room, None, query, limit).await
    }

    async fn history_page(
        &self,
        room: RoomId,
        viewer: Option<UserId>,
        query: HistoryQuery,
        limit: i64,
    ) -> StoreResult<HistoryPage> {
        let id = room.to_string();
        // The viewer's clear mark is a subquery, so a page is one round trip: after a
        // reconnect storm every client reads one, so this was half the storm's statements.
        // A viewer who is not a member has no mark and sees nothing: the runtime's member
        // lists may lag a removal by a moment, the store does not.
        let viewer = &viewer;
        let mut rows: Vec<MessageRow> = with_conn!(self, copied(viewer), |conn| {
            let mut base = messages::table
                .filter(messages::room_id.eq(&id))
                .select(MessageRow::as_select())
                .limit(limit + 1)
                .into_boxed();
            if let Some(viewer) = viewer {
                let floor = coalesce(
                    room_members::table.find((&id, viewer.as_str())).select(room_members::cleared_seq).single_value(),
                    i64::MAX,
                );
                base = base.filter(messages::seq.gt(floor));
            }
            match query {
                HistoryQuery::Newest => base.order(messages::seq.desc()).load(conn).await?,
                HistoryQuery::Before(seq) => {
                    base.filter(messages::seq.lt(seq)).order(messages::seq.desc()).load(conn).await?
                }
                HistoryQuery::After(seq) => {
                    base.filter(messages::seq.gt(seq)).order(messages::seq.asc()).load(conn).await?
                }
                HistoryQuery::Between(after, before) => {
                    let range = base.filter(messages::seq.gt(after)).filter(messages::seq.lt(before));
                    range.order(messages::seq.asc()).load(conn).await?
                }
            }
        });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if !matches!(query, HistoryQuery::After(_) | HistoryQuery::Between(..)) {
            rows.reverse();
        }
        Ok(HistoryPage { messages: rows.into_iter().map(Message::from).collect(), has_more })
    }

    /// Messages with `after < seq <= up_to`, in seq order, whoever cleared what (for
    /// live delivery, which fills gaps between pushes from the store).
    pub async fn messages_between(&self, room: RoomId, after: i64, up_to: i64) -> StoreResult<Vec<Message>> {
        let id = room.to_string();
        let rows: Vec<MessageRow> = with_conn!(self, |conn| {
            messages::table
                .filter(messages::room_id.eq(&id))
                .filter(messages::seq.gt(after))
                .filter(messages::seq.le(up_to))
                .order(messages::seq.asc())
                .select(MessageRow::as_select())
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(Message::from).collect())
    }

    /// The newest `limit` messages with `seq > after`, in seq order, whoever cleared what (for
    /// live delivery catching up after a bus outage).
    pub async fn newest_after(&self, room: RoomId, after: i64, limit: i64) -> StoreResult<Vec<Message>> {
        let id = room.to_string();
        let rows: Vec<MessageRow> = with_conn!(self, |conn| {
            messages::table
                .filter(messages::room_id.eq(&id))
                .filter(messages::seq.gt(after))
                .order(messages::seq.desc())
                .limit(limit)
                .select(MessageRow::as_select())
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().rev().map(Message::from).collect())
    }

    /// Each member's read mark in `room`.
    pub async fn read_marks(&self, room: RoomId) -> StoreResult<HashMap<UserId, i64>> {
        let id = room.to_string();
        let marks: Vec<(UserId, i64)> = with_conn!(self, |conn| {
            room_members::table
                .filter(room_members::room_id.eq(&id))
                .select((room_members::user_id, room_members::last_read_seq))
                .load(conn)
                .await?
        });
        Ok(marks.into_iter().collect())
    }

    /// Moves the reader's mark forward to `seq` (default: the latest), never backward and
    /// never past the room's last seq. Returns the mark now in force and whether it moved.
    pub async fn mark_read(&self, room: RoomId, reader: &UserId, seq: Option<i64>) -> StoreResult<(i64, bool)> {
        let id = room.to_string();
        with_conn!(self, copied(reader), |conn| {
            let last_seq: i64 = rooms::table.find(&id).select(rooms::last_seq).first(conn).await?;
            let target = seq.unwrap_or(last_seq).clamp(0, last_seq);
            let member = room_members::table.find((&id, reader.as_str()));
            let moved = diesel::update(member.filter(room_members::last_read_seq.lt(target)))
                .set(room_members::last_read_seq.eq(target))
                .execute(conn)
                .await?;
            Ok((member.select(room_members::last_read_seq).first(conn).await?, moved > 0))
        })
    }

    /// Hides everything up to the room's last seq from this member only, and marks it read;
    /// like the read mark, the cleared seq never moves backward (two clears racing a message).
    /// Returns the cleared seq now in force and whether the read mark moved; `None` for a
    /// user who is not a member (any more).
    pub async fn clear_room(&self, room: RoomId, member: &UserId) -> StoreResult<Option<(i64, bool)>> {
        let id = room.to_string();
        with_conn!(self, copied(member), |conn| {
            let last_seq: i64 = rooms::table.find(&id).select(rooms::last_seq).first(conn).await?;
            let row = room_members::table.find((&id, member.as_str()));
            diesel::update(row.filter(room_members::cleared_seq.lt(last_seq)))
                .set(room_members::cleared_seq.eq(last_seq))
                .execute(conn)
                .await?;
            let moved = diesel::update(row.filter(room_members::last_read_seq.lt(last_seq)))
                .set(room_members::last_read_seq.eq(last_seq))
                .execute(conn)
                .await?;
            let cleared: Option<i64> = row.select(room_members::cleared_seq).first(conn).await.optional()?;
            Ok(cleared.map(|cleared| (cleared, moved > 0)))
        })
    }
}

/// The rooms of a page, each with its members, last message (unless cleared) and unread count.
fn assemble_rooms(
    page: Vec<(RoomRow, MemberRow, i64)>,
    members: Vec<(RoomId, UserId)>,
    last: Vec<MessageRow>,
    unread: Vec<(RoomId, i64)>,
) -> Vec<Room> {
    let mut members_by_room: HashMap<RoomId, Vec<UserId>> = HashMap::new();
    for (room, user) in members {
        members_by_room.entry(room).or_default().push(user);
    }
    let mut last_by_room: HashMap<RoomId, MessageRow> = last.into_iter().map(|m| (m.room_id, m)).collect();
    let unread_by_room: HashMap<RoomId, i64> = unread.into_iter().collect();

    page.into_iter()
        .map(|(room, member, number)| {
            let last_message = last_by_room.remove(&room.id).filter(|m| m.seq > member.cleared_seq).map(Message::from);
            Room {
                id: room.id,
                kind: room.kind,
                name: room.name.clone(),
                members: members_by_room.remove(&room.id).unwrap_or_default(),
                created_by: room.created_by.clone(),
                created_at: Timestamp::from_millis(room.created_at),
                last_message,
                unread: unread_by_room.get(&room.id).copied().unwrap_or(0),
                last_read_seq: member.last_read_seq,
                last_seq: room.last_seq,
                last_activity_at: Timestamp::from_millis(room.last_activity_at),
                number,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum RoomFilter {
    One(RoomId),
    Page { limit: i64, before: Option<RoomCursor> },
}
