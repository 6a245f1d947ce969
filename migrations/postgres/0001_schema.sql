-- Easel's schema on PostgreSQL: the same tables, columns and rules as the SQLite migrations
-- 0001-0003 (see those files for what each column means), in PostgreSQL's types. Integers are
-- BIGINT throughout (the server reads every integer as a 64-bit value on both databases),
-- booleans are 0/1 BIGINTs like on SQLite, JSON is TEXT, bytes are BYTEA.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
INSERT INTO users (id, name, created_at) VALUES ('local', 'Local user', 0);

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    current_version_id  TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX agents_by_user ON agents (user_id, updated_at DESC);

CREATE TABLE agent_versions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT '',
    model        TEXT,
    meta         TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    UNIQUE (agent_id, version)
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    title_is_custom  BIGINT NOT NULL DEFAULT 0,
    agent_id         TEXT REFERENCES agents(id) ON DELETE SET NULL,
    agent_version_id TEXT REFERENCES agent_versions(id) ON DELETE SET NULL,
    model            TEXT,
    internal_tools   TEXT NOT NULL DEFAULT '{"image_creation":false}',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at DESC);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('running', 'complete', 'cancelled', 'failed')),
    error_code      TEXT,
    error_message   TEXT,
    model           TEXT,
    tool_calls      TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at, id);

CREATE TABLE runs (
    id                   TEXT PRIMARY KEY,
    conversation_id      TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_message_id      TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    assistant_message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    status               TEXT NOT NULL DEFAULT 'running'
                         CHECK (status IN ('running', 'finished', 'cancelled', 'failed')),
    error_code           TEXT,
    error_message        TEXT,
    created_at           BIGINT NOT NULL,
    finished_at          BIGINT
);
CREATE INDEX runs_by_conversation ON runs (conversation_id, created_at);
CREATE UNIQUE INDEX runs_one_running ON runs (conversation_id) WHERE status = 'running';

CREATE TABLE image_jobs (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source          TEXT NOT NULL CHECK (source IN ('chat', 'studio', 'api', 'cli')),
    conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages(id) ON DELETE CASCADE,
    tool_call_id    TEXT,
    first_index     BIGINT NOT NULL DEFAULT 0,
    model           TEXT NOT NULL,
    n               BIGINT NOT NULL,
    request         TEXT NOT NULL,
    source_png      BYTEA,
    mask_png        BYTEA,
    latents         BYTEA,
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    step            BIGINT NOT NULL DEFAULT 0,
    steps           BIGINT NOT NULL DEFAULT 0,
    images_done     BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    error_code      TEXT,
    error_message   TEXT,
    worker          TEXT,
    lease_until     BIGINT,
    queued_at       BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    engine_ms       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX image_jobs_queue ON image_jobs (state, queued_at, id);
CREATE INDEX image_jobs_by_owner ON image_jobs (user_id, started_at);
CREATE INDEX image_jobs_by_message ON image_jobs (message_id);

CREATE TABLE images (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages(id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
    job_id          TEXT REFERENCES image_jobs(id) ON DELETE SET NULL,
    source          TEXT NOT NULL DEFAULT 'chat' CHECK (source IN ('chat', 'studio', 'api', 'cli')),
    position        BIGINT NOT NULL DEFAULT 0,
    width           BIGINT NOT NULL,
    height          BIGINT NOT NULL,
    png             BYTEA NOT NULL,
    jpeg            BYTEA,
    thumbnail       BYTEA NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL
);
CREATE INDEX images_by_message ON images (message_id, position);
CREATE INDEX images_by_conversation ON images (conversation_id, message_id, position);
CREATE INDEX images_by_user_source ON images (user_id, source, created_at DESC);
CREATE UNIQUE INDEX images_by_job ON images (job_id, position) WHERE job_id IS NOT NULL;

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
