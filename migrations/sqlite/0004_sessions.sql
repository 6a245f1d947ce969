-- Signed-in browsers. The cookie holds a random token; this table holds only its SHA-256
-- (`id_hash`), so a copy of the database cannot be used to sign in. A session ends when it is
-- unused for too long (`last_seen_at`, written at most once a minute) or at `expires_at`,
-- whichever comes first, or at sign-out.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
