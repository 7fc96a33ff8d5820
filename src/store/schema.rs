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
        number -> BigInt,
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
        number -> BigInt,
    }
}

diesel::joinable!(room_members -> rooms (room_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::allow_tables_to_appear_in_same_query!(users, rooms, room_members, messages);

diesel::table! {
    blocks (blocker_id, blocked_id) {
        blocker_id -> Text,
        blocked_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    relationship_requests (from_id, to_id, kind) {
        from_id -> Text,
        to_id -> Text,
        kind -> Text,
        state -> Text,
        created_at -> BigInt,
        responded_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        from_id -> Text,
        room_id -> Nullable<Text>,
        created_at -> BigInt,
        read_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    likes (liker_id, likee_id) {
        liker_id -> Text,
        likee_id -> Text,
        liked -> Bool,
        updated_at -> BigInt,
    }
}

diesel::table! {
    like_pairs (pair_key) {
        pair_key -> Text,
        matched_at -> Nullable<BigInt>,
        room_id -> Nullable<Text>,
    }
}

diesel::table! {
    reports (id) {
        id -> Text,
        reporter_id -> Text,
        target_id -> Text,
        reason -> Text,
        message_id -> Nullable<Text>,
        room_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    locations (user_id) {
        user_id -> Text,
        lat -> Double,
        lng -> Double,
        geohash -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    calls (id) {
        id -> Text,
        room_id -> Text,
        caller_id -> Text,
        media -> Text,
        state -> Text,
        created_at -> BigInt,
        answered_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        end_reason -> Nullable<Text>,
        ring_deadline -> BigInt,
    }
}

diesel::table! {
    call_participants (call_id, user_id) {
        call_id -> Text,
        user_id -> Text,
        role -> Text,
        status -> Text,
        device -> Nullable<Text>,
        joined_at -> Nullable<BigInt>,
        left_at -> Nullable<BigInt>,
        away_since -> Nullable<BigInt>,
    }
}

diesel::table! {
    call_lines (user_id) {
        user_id -> Text,
        call_id -> Text,
    }
}

diesel::table! {
    call_events (call_id, at, event) {
        call_id -> Text,
        at -> BigInt,
        user_id -> Nullable<Text>,
        event -> Text,
    }
}

diesel::joinable!(call_participants -> calls (call_id));
diesel::allow_tables_to_appear_in_same_query!(calls, call_participants, call_lines, call_events);

diesel::table! {
    live_sessions (id) {
        id -> Text,
        host_id -> Text,
        title -> Text,
        state -> Text,
        created_at -> BigInt,
        ended_at -> Nullable<BigInt>,
        end_reason -> Nullable<Text>,
        viewers -> BigInt,
    }
}

diesel::table! {
    live_viewers (session_id, user_id) {
        session_id -> Text,
        user_id -> Text,
        joined_at -> BigInt,
    }
}

diesel::table! {
    live_hands (session_id, user_id) {
        session_id -> Text,
        user_id -> Text,
        raised_at -> BigInt,
    }
}

diesel::table! {
    live_comments (id) {
        id -> Text,
        session_id -> Text,
        user_id -> Text,
        text -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(live_viewers -> live_sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(live_sessions, live_viewers, live_hands, live_comments);

diesel::table! {
    revocations (user_id) {
        user_id -> Text,
        revoked_before -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        fingerprint -> Text,
        status -> Nullable<Integer>,
        body -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    webhook_outbox (id) {
        id -> Text,
        #[sql_name = "type"]
        event_type -> Text,
        data -> Text,
        created_at -> BigInt,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        state -> Text,
        last_error -> Nullable<Text>,
        last_attempt_at -> Nullable<BigInt>,
        collapse_key -> Nullable<Text>,
        collapsed -> Integer,
    }
}

diesel::table! {
    socketio_sessions (pid) {
        pid -> Text,
        user_id -> Text,
        baseline -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
    }
}
