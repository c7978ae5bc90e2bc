-- An empty room's session goes on until this time, in unix milliseconds (0 when it
-- is not waiting): for its empty timeout, or while a lost participant may come back.
ALTER TABLE rooms ADD COLUMN empty_until_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX rooms_empty_until ON rooms (empty_until_ms) WHERE empty_until_ms > 0
