-- The webhook outbox: every event for the app's back end is a row here before any attempt,
-- so none is lost with a node. `next_attempt_at` (epoch ms) is when it is due: a collapsible
-- `message.offline` is first due a collapse window after it was created, a claimed row is
-- leased by moving it forward, a failed attempt by the backoff. `collapse_key`
-- (`recipient|room`) is set only while later messages may still fold into the row
-- (`collapsed` counts them); claiming clears it. NULLs are distinct in a UNIQUE index.
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    state           TEXT NOT NULL,
    last_error      TEXT,
    last_attempt_at BIGINT,
    collapse_key    TEXT,
    collapsed       INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX webhook_outbox_collapse_key ON webhook_outbox (collapse_key);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
