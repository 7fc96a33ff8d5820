-- Socket.IO sessions a client may recover: a random pid bound to its user, each of the
-- user's rooms' last seq when it was issued (`room:seq` lines), and until when it may be
-- recovered (NULL while a connection holds it). Kept to a few per user and pruned once expired.
CREATE TABLE socketio_sessions (
    pid        TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    baseline   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX socketio_sessions_by_user ON socketio_sessions (user_id, created_at);
CREATE INDEX socketio_sessions_by_expiry ON socketio_sessions (expires_at);
