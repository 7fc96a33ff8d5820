-- Live sessions: the session, who is watching, raised hands and comments. The database is
-- the truth shared by every node: viewer counts are counts of rows, so a user with several
-- connections (on any nodes) counts once.

-- state 'live' or 'ended'; end_reason 'host_ended' or 'host_left' once ended.
CREATE TABLE live_sessions (
    id         TEXT PRIMARY KEY,
    host_id    TEXT NOT NULL,
    title      TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('live', 'ended')),
    created_at INTEGER NOT NULL,
    ended_at   INTEGER,
    end_reason TEXT CHECK (end_reason IN ('host_ended', 'host_left')),
    -- the number of live_viewers rows, kept in step by the same transactions (joins must not
    -- count the whole audience)
    viewers    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX live_sessions_by_host ON live_sessions (host_id, state);
CREATE INDEX live_sessions_by_state ON live_sessions (state);

-- One row per user watching; kept when the session ends (the count is frozen then).
CREATE TABLE live_viewers (
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX live_viewers_by_user ON live_viewers (user_id);

-- Raised hands waiting for the host, in raise order.
CREATE TABLE live_hands (
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    raised_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

-- Comments; ids are UUID v7 (time-ordered), compared bytewise (SQLite's default) for paging.
CREATE TABLE live_comments (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX live_comments_by_session ON live_comments (session_id, id);
