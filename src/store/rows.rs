//! Row types and their conversion into domain objects.

use diesel::prelude::*;

use super::schema::{messages, room_members, rooms};
use crate::domain::{Message, MessageKind, RoomId, RoomKind, Timestamp, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = rooms)]
pub struct RoomRow {
    #[diesel(serialize_as = String)]
    pub id: RoomId,
    #[diesel(serialize_as = String)]
    pub kind: RoomKind,
    pub name: Option<String>,
    #[diesel(serialize_as = String)]
    pub created_by: UserId,
    pub created_at: i64,
    pub last_seq: i64,
    pub last_activity_at: i64,
    pub direct_key: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = room_members)]
pub struct MemberRow {
    pub room_id: String,
    pub user_id: String,
    pub joined_at: i64,
    pub last_read_seq: i64,
    pub cleared_seq: i64,
}

impl MemberRow {
    pub fn new(room_id: &str, user_id: &str, now: i64) -> Self {
        Self {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            joined_at: now,
            last_read_seq: 0,
            cleared_seq: 0,
        }
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: String,
    #[diesel(serialize_as = String)]
    pub room_id: RoomId,
    pub seq: i64,
    #[diesel(serialize_as = String)]
    pub sender_id: UserId,
    #[diesel(serialize_as = String)]
    pub kind: MessageKind,
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub number: i64,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            room_id: row.room_id,
            id: row.id,
            seq: row.seq,
            sender_id: row.sender_id,
            kind: row.kind,
            body: row.body,
            client_id: row.client_id,
            created_at: Timestamp::from_millis(row.created_at),
            number: row.number,
        }
    }
}
