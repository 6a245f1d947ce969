-- Accounts (issue 11): people sign in; every row already belongs to a user.
--
-- `users` gains what an account needs. The row `local` (every row's owner until now) becomes
-- the first admin when the admin account is created, so an existing installation keeps its
-- history. `email` is stored lower-cased and unique; `password_hash` is an argon2id PHC string;
-- `role` is `admin` or `user`; `disabled` users cannot sign in and their sessions and keys stop
-- working at once; `pending` users signed up while registration needs approval.
-- Credits: `credits` is the balance (never negative: every spend is a conditional update);
-- `allowance` overrides the default allowance per period (NULL: the default); the balance is
-- topped up to the allowance at the start of each period (`allowance_period` records the start
-- of the last period that was topped up).
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user'));
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0);
ALTER TABLE users ADD COLUMN allowance INTEGER;
ALTER TABLE users ADD COLUMN allowance_period INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_by_email ON users (email) WHERE email IS NOT NULL;

-- API keys: shown once at creation; only the SHA-256 of the key is stored, with its first
-- characters (`prefix`) so lists can tell keys apart.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

-- Server-wide settings an admin changes at run time (registration, credits, model costs), as
-- JSON values by key.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- What each finished image job cost: per user and model, images made, credits charged and the
-- engine time measured, so admins can see usage and price models by real cost.
CREATE TABLE usage (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    job_id     TEXT,
    model      TEXT NOT NULL,
    images     INTEGER NOT NULL,
    credits    INTEGER NOT NULL,
    engine_ms  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX usage_by_time ON usage (created_at);

-- A job's credits are reserved when it is queued and settled when it ends.
ALTER TABLE image_jobs ADD COLUMN credits_reserved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN credits_settled INTEGER NOT NULL DEFAULT 0;

-- Agents may be shared with everyone (others use them; only the owner edits them).
ALTER TABLE agents ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
