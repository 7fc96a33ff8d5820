-- The server API's idempotency keys: a repeat of a request with the same `Idempotency-Key`
-- within 24 h gets the first answer. `fingerprint` (method, path and body hashed) tells a
-- repeat from a different request reusing the key; `status` and `body` are NULL while the
-- first request runs. Times are epoch ms.
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    body        TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_created_at ON idempotency_keys (created_at);
