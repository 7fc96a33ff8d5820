//! Typed columns: ids and closed sets are stored as text and decoded on the way out. A stored
//! value that no longer parses fails its query (logged, `internal` to the client); nothing
//! is made up in its place.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, Queryable};
use diesel::sql_types::{SingleValue, Text};

use crate::domain::{
    CallId, CallState, ConnectionId, EndReason, LiveEndReason, LiveState, Media, MessageKind, PartyRole, PartyStatus,
    RoomId, RoomKind, SessionId, UserId,
};

/// Decodes `$ty` from a text column with `$parse` (a `&str -> Result<$ty, _>`).
macro_rules! text_column {
    ($($ty:ty => $parse:expr;)*) => {$(
        impl<DB: Backend> FromSql<Text, DB> for $ty
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let raw = String::from_sql(bytes)?;
                let parse = $parse;
                parse(raw.as_str()).map_err(|_| format!("stored {} `{raw}` does not parse", stringify!($ty)).into())
            }
        }

        // What `#[derive(FromSqlRow)]` writes: the value is a whole column of a row.
        impl<DB, ST> Queryable<ST, DB> for $ty
        where
            DB: Backend,
            ST: SingleValue,
            Self: FromSql<ST, DB>,
        {
            type Row = Self;

            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }
    )*};
}

text_column! {
    UserId => |raw: &str| UserId::parse(raw);
    RoomId => |raw: &str| RoomId::parse(raw);
    CallId => |raw: &str| CallId::parse(raw);
    SessionId => |raw: &str| SessionId::parse(raw);
    ConnectionId => |raw: &str| ConnectionId::parse(raw).ok_or(());
    RoomKind => |raw: &str| raw.parse::<RoomKind>();
    MessageKind => |raw: &str| raw.parse::<MessageKind>();
    Media => |raw: &str| raw.parse::<Media>();
    CallState => |raw: &str| raw.parse::<CallState>();
    EndReason => |raw: &str| raw.parse::<EndReason>();
    PartyStatus => |raw: &str| raw.parse::<PartyStatus>();
    PartyRole => |raw: &str| raw.parse::<PartyRole>();
    LiveState => |raw: &str| raw.parse::<LiveState>();
    LiveEndReason => |raw: &str| raw.parse::<LiveEndReason>();
}

/// Rows written with a typed field store its text (`#[diesel(serialize_as = String)]`).
macro_rules! stored_as_text {
    ($($ty:ty),*) => {$(
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.as_str().to_owned()
            }
        }
    )*};
}

stored_as_text!(RoomKind, MessageKind, Media, CallState, EndReason, PartyStatus, PartyRole, LiveState, LiveEndReason);
