-- Social graph, dating, safety and location.

-- `blocker` blocked `blocked`. Enforced in both directions for 1:1 contact.
CREATE TABLE blocks (
    blocker_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_by_blocked ON blocks (blocked_id);

-- Follow and friend requests: kind 'follow' or 'friend', state 'pending', 'accepted' or 'declined'.
CREATE TABLE relationship_requests (
    from_id      TEXT NOT NULL,
    to_id        TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('follow', 'friend')),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
    created_at   INTEGER NOT NULL,
    responded_at INTEGER,
    PRIMARY KEY (from_id, to_id, kind)
);
CREATE INDEX relationship_requests_to ON relationship_requests (to_id, state);

-- Stored notifications, so that a user who was offline sees them later.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    from_id    TEXT NOT NULL,
    room_id    TEXT,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at);

-- Dating: one row per (liker, likee); `liked` false records a dislike.
CREATE TABLE likes (
    liker_id   TEXT NOT NULL,
    likee_id   TEXT NOT NULL,
    liked      BOOLEAN NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (liker_id, likee_id)
);

-- One row per pair that ever liked in either direction; its row lock serializes the two
-- likers so a mutual like becomes exactly one match.
CREATE TABLE like_pairs (
    pair_key   TEXT PRIMARY KEY,
    matched_at INTEGER,
    room_id    TEXT
);

CREATE TABLE reports (
    id          TEXT PRIMARY KEY,
    reporter_id TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message_id  TEXT,
    room_id     TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX reports_by_target ON reports (target_id, created_at);

-- Last known location; `geohash` (precision 6) is range-scanned by cell prefix for nearby
-- queries, so they never scan every user.
CREATE TABLE locations (
    user_id    TEXT PRIMARY KEY,
    lat        REAL NOT NULL,
    lng        REAL NOT NULL,
    geohash    TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX locations_by_geohash ON locations (geohash);
