//! Row types and their conversion into domain objects.

use diesel::prelude::*;

use super::schema::{messages, room_members, rooms};
use crate::domain::{Message, MessageKind, RoomId, RoomKind, Timestamp, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = rooms)]
pub struct RoomRow {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub created_by: String,
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
    pub room_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub kind: String,
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub number: i64,
}

/// Ids in the database were validated when written; a row that no longer parses is a bug
/// worth a loud log, not a crash.
pub fn user_id(raw: String) -> UserId {
    UserId::parse(raw.clone()).unwrap_or_else(|e| {
        tracing::error!(raw, error = %e, "stored user id does not parse");
        UserId::parse("invalid").expect("literal user id")
    })
}

pub fn room_id(raw: &str) -> RoomId {
    RoomId::parse(raw).unwrap_or_else(|e| {
        tracing::error!(raw, error = %e, "stored room id does not parse");
        RoomId::new()
    })
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            room_id: room_id(&row.room_id),
            id: row.id,
            seq: row.seq,
            sender_id: user_id(row.sender_id),
            kind: MessageKind::parse(&row.kind).unwrap_or(MessageKind::Text),
            body: row.body,
            client_id: row.client_id,
            created_at: Timestamp::from_millis(row.created_at),
            number: row.number,
        }
    }
}

impl RoomRow {
    pub fn kind(&self) -> RoomKind {
        RoomKind::parse(&self.kind)
    }
}
