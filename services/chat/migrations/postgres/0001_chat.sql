CREATE TABLE chat_rooms (
    room TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    retention_secs BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE chat_entries (
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    body TEXT NOT NULL,
    client_id TEXT NOT NULL,
    reply_to BIGINT NOT NULL,
    target_seq BIGINT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    edited BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX chat_entries_client ON chat_entries (room, sender_id, client_id);
CREATE INDEX chat_entries_sent ON chat_entries (sent_at_ms)
