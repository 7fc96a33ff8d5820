-- Numeric aliases for rooms and messages, for clients whose models hold integer ids (the
-- messenger and rooms dialects). UUIDs stay the primary keys; a number is unique and
-- increasing but may have gaps. Messages take theirs from the sequence in the writer, a
-- batch at a time, so the column default only serves rows written by hand.
ALTER TABLE rooms ADD COLUMN number BIGSERIAL;
CREATE UNIQUE INDEX rooms_by_number ON rooms (number);

CREATE SEQUENCE message_numbers AS BIGINT;
ALTER TABLE messages ADD COLUMN number BIGINT NOT NULL DEFAULT nextval('message_numbers');
ALTER SEQUENCE message_numbers OWNED BY messages.number;
