-- Numeric aliases for rooms and messages (see the PostgreSQL migration). SQLite has no
-- sequences: a room takes its rowid (set by the trigger below), and the message writer
-- takes numbers from a counter row (a write, so its transaction holds the write lock from
-- its first statement on).
ALTER TABLE rooms ADD COLUMN number INTEGER;
UPDATE rooms SET number = rowid;
CREATE UNIQUE INDEX rooms_by_number ON rooms (number);
CREATE TRIGGER rooms_number AFTER INSERT ON rooms WHEN NEW.number IS NULL
BEGIN
    UPDATE rooms SET number = NEW.rowid WHERE rowid = NEW.rowid;
END;

ALTER TABLE messages ADD COLUMN number INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET number = rowid;
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) SELECT 'message_numbers', COALESCE(MAX(number), 0) FROM messages;
