DROP DATABASE IF EXISTS narrow;
CREATE DATABASE narrow;
\c narrow
CREATE TABLE rooms_t (id TEXT PRIMARY KEY, number BIGSERIAL UNIQUE, last_seq BIGINT NOT NULL DEFAULT 0);
INSERT INTO rooms_t (id) SELECT gen_random_uuid()::text FROM generate_series(1, 240);
-- today's shape
CREATE TABLE m_text (id TEXT PRIMARY KEY, room_id TEXT NOT NULL REFERENCES rooms_t (id), seq BIGINT NOT NULL,
  sender_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, client_id TEXT, created_at BIGINT NOT NULL,
  number BIGINT NOT NULL, UNIQUE (room_id, seq), UNIQUE (room_id, sender_id, client_id));
-- room-led indexes on the numeric alias
CREATE TABLE m_num (id TEXT PRIMARY KEY, room_no BIGINT NOT NULL REFERENCES rooms_t (number), seq BIGINT NOT NULL,
  sender_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, client_id TEXT, created_at BIGINT NOT NULL,
  number BIGINT NOT NULL, UNIQUE (room_no, seq), UNIQUE (room_no, sender_id, client_id));
CREATE SEQUENCE n;
CREATE FUNCTION fill(tbl text, batches int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE b int;
BEGIN
  FOR b IN 1..batches LOOP
    IF tbl = 'text' THEN
      INSERT INTO m_text SELECT gen_random_uuid()::text, r.id, b, 'user' || (random()*600)::int, 'text', repeat('x', 64),
        gen_random_uuid()::text, 0, nextval('n')
      FROM (SELECT id FROM rooms_t ORDER BY random() LIMIT 48) r;
    ELSE
      INSERT INTO m_num SELECT gen_random_uuid()::text, r.number, b, 'user' || (random()*600)::int, 'text', repeat('x', 64),
        gen_random_uuid()::text, 0, nextval('n')
      FROM (SELECT number FROM rooms_t ORDER BY random() LIMIT 48) r;
    END IF;
  END LOOP;
END $$;
\timing on
SELECT fill('text', 3440);
SELECT fill('num', 3440);
TRUNCATE m_text; TRUNCATE m_num;
SELECT fill('num', 3440);
SELECT fill('text', 3440);
