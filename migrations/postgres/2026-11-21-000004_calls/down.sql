DROP TABLE call_events;
DROP TABLE call_lines;
DROP TABLE call_participants;
DROP TABLE calls;
