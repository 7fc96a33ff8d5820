DROP TABLE locations;
DROP TABLE reports;
DROP TABLE like_pairs;
DROP TABLE likes;
DROP TABLE notifications;
DROP TABLE relationship_requests;
DROP TABLE blocks;
