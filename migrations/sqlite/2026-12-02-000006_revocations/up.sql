-- A user's revocation: their tokens issued (`iat`) before `revoked_before` are refused, and
-- so are their tokens without `iat`. One row per user; a later revocation moves the time
-- forward. `created_at` (epoch ms, the revoker's clock) lets every node pick up new rows.
CREATE TABLE revocations (
    user_id        TEXT PRIMARY KEY,
    revoked_before BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX revocations_by_created_at ON revocations (created_at);
