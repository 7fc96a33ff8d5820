-- Call signaling. The database holds every call's state, so any node can act on any call
-- and no call depends on the node that started it: transitions are conditional updates,
-- and every node sweeps for ring timeouts and vanished parties.
CREATE TABLE calls (
    id            TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    caller_id     TEXT NOT NULL,
    media         TEXT NOT NULL CHECK (media IN ('audio', 'video')),
    state         TEXT NOT NULL CHECK (state IN ('ringing', 'active', 'ended')),
    created_at    INTEGER NOT NULL,
    answered_at   INTEGER,
    ended_at      INTEGER,
    end_reason    TEXT,
    -- invitees still ringing at this time have missed the call
    ring_deadline INTEGER NOT NULL
);
CREATE INDEX calls_by_room ON calls (room_id, created_at);
CREATE INDEX calls_by_state ON calls (state, ring_deadline);

-- status: ringing, joined, declined, left, missed, busy, cancelled.
-- device: the connection that joined (signals go only there); away_since: when the user's
-- last connection anywhere closed during the call.
CREATE TABLE call_participants (
    call_id    TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('caller', 'callee')),
    status     TEXT NOT NULL,
    device     TEXT,
    joined_at  INTEGER,
    left_at    INTEGER,
    away_since INTEGER,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX call_participants_by_user ON call_participants (user_id, status);

-- A user is on at most one line: the unique key is the cluster-wide busy check.
CREATE TABLE call_lines (
    user_id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL
);

-- Every state change, for the call log.
CREATE TABLE call_events (
    call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    user_id TEXT,
    event   TEXT NOT NULL
);
CREATE INDEX call_events_by_call ON call_events (call_id, at);
