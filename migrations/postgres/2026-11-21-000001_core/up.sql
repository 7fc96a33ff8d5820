-- Core chat schema. Ids are text (user ids are the token's `sub`; room and message ids are
-- UUIDs rendered as text) and times are epoch milliseconds, so that PostgreSQL and SQLite
-- share one diesel schema and one set of queries.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    avatar      TEXT,
    last_seen   BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE rooms (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name             TEXT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    -- highest seq handed out; bumped in the same transaction that inserts the messages
    last_seq         BIGINT NOT NULL DEFAULT 0,
    last_activity_at BIGINT NOT NULL,
    -- JSON array ["lo","hi"] of the two member ids for direct rooms: one direct room per pair
    direct_key       TEXT UNIQUE
);

CREATE TABLE room_members (
    room_id       TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    joined_at     BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    cleared_seq   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_by_user ON room_members (user_id);

CREATE TABLE messages (
    id         TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    sender_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    client_id  TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (room_id, seq),
    UNIQUE (room_id, sender_id, client_id)
);
