-- Generated images are part of the chat history: each row hangs off the assistant message that
-- made it and goes when the message goes (ON DELETE CASCADE), so deleting a message, clearing a
-- history or deleting a conversation removes the bytes and nothing is orphaned. Rows are written
-- in the same transaction as the message's final state.
--
-- `png` holds the image as generated (lossless); `jpeg` is filled on the first JPG request and
-- kept, so conversion happens once; `thumbnail` is a small JPEG (at most 256 px a side) for lists. `metadata`
-- is the JSON of how it was made (model, prompt as sent to the engine, negative prompt, seed,
-- steps, sampler, schedule, guidance, size, the tool arguments).
-- Studio results (no chat) use `message_id` NULL and `source` = 'studio'.
CREATE TABLE images (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages(id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
    source          TEXT NOT NULL DEFAULT 'chat' CHECK (source IN ('chat', 'studio', 'api')),
    position        INTEGER NOT NULL DEFAULT 0,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    png             BLOB NOT NULL,
    jpeg            BLOB,
    thumbnail       BLOB NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
CREATE INDEX images_by_message ON images (message_id, position);
CREATE INDEX images_by_user_source ON images (user_id, source, created_at DESC);
