DROP TABLE live_comments;
DROP TABLE live_hands;
DROP TABLE live_viewers;
DROP TABLE live_sessions;
