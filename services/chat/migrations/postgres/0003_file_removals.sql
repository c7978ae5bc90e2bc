CREATE TABLE chat_file_removals (
    file_id TEXT PRIMARY KEY,
    queued_at_ms BIGINT NOT NULL
)
