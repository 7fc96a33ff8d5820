-- Numeric aliases for rooms and messages (see the PostgreSQL migration). SQLite has no
-- sequences: a room takes its rowid (set by the trigger below), and the single writer
-- numbers messages after the highest number stored.
ALTER TABLE rooms ADD COLUMN number INTEGER;
UPDATE rooms SET number = rowid;
CREATE UNIQUE INDEX rooms_by_number ON rooms (number);
CREATE TRIGGER rooms_number AFTER INSERT ON rooms WHEN NEW.number IS NULL
BEGIN
    UPDATE rooms SET number = NEW.rowid WHERE rowid = NEW.rowid;
END;

ALTER TABLE messages ADD COLUMN number INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET number = rowid;
CREATE INDEX messages_by_number ON messages (number);
