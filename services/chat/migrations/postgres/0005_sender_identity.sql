-- Who sent an entry across its connections (the access token's subject, or the guest
-- identity a rejoin keeps): a resend under the same client id after the sender came
-- back through another connection is the same message, and its author may still edit
-- and delete it. Entries stored before this migration have none and go by sender_id.
ALTER TABLE chat_entries ADD COLUMN sender_identity TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX chat_entries_author_client ON chat_entries (room, sender_identity, client_id)
    WHERE sender_identity <> ''
