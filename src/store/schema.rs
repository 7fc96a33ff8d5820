//! The diesel schema shared by both backends (ids as text, times as epoch milliseconds).

diesel::table! {
    users (id) {
        id -> Text,
        name -> Nullable<Text>,
        avatar -> Nullable<Text>,
        last_seen -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    rooms (id) {
        id -> Text,
        kind -> Text,
        name -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        last_seq -> BigInt,
        last_activity_at -> BigInt,
        direct_key -> Nullable<Text>,
    }
}

diesel::table! {
    room_members (room_id, user_id) {
        room_id -> Text,
        user_id -> Text,
        joined_at -> BigInt,
        last_read_seq -> BigInt,
        cleared_seq -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        room_id -> Text,
        seq -> BigInt,
        sender_id -> Text,
        kind -> Text,
        body -> Text,
        client_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::joinable!(room_members -> rooms (room_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::allow_tables_to_appear_in_same_query!(users, rooms, room_members, messages);
