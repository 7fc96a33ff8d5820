DROP TABLE counters;
ALTER TABLE messages DROP COLUMN number;
DROP TRIGGER rooms_number;
DROP INDEX rooms_by_number;
ALTER TABLE rooms DROP COLUMN number;
