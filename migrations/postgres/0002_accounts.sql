-- Accounts: the same columns and tables as migrations/sqlite/0005_accounts.sql (see there).
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user'));
ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN credits BIGINT NOT NULL DEFAULT 0 CHECK (credits >= 0);
ALTER TABLE users ADD COLUMN allowance BIGINT;
ALTER TABLE users ADD COLUMN allowance_period BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_by_email ON users (email) WHERE email IS NOT NULL;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE usage (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    job_id     TEXT,
    model      TEXT NOT NULL,
    images     BIGINT NOT NULL,
    credits    BIGINT NOT NULL,
    engine_ms  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_by_time ON usage (created_at);

ALTER TABLE image_jobs ADD COLUMN credits_reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN credits_settled BIGINT NOT NULL DEFAULT 0;

ALTER TABLE agents ADD COLUMN shared BIGINT NOT NULL DEFAULT 0;
