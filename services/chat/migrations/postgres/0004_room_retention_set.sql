-- A room's retention is its own once the tenant sets it (0 keeps its chat for good),
-- and until then the chat service's default retention applies. A room that had a
-- retention before this migration keeps it.
ALTER TABLE chat_rooms ADD COLUMN retention_set BIGINT NOT NULL DEFAULT 0;
UPDATE chat_rooms SET retention_set = 1 WHERE retention_secs > 0
