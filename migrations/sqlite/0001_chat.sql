-- Easel's chat history. Times are UTC milliseconds since the epoch (INTEGER sorts and compares
-- cheaply); ids are UUIDv7 text, so ordering by id is ordering by creation time.

-- Every row below belongs to a user. Until accounts exist there is one local user, created
-- here, and the server acts as that user.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO users (id, name, created_at) VALUES ('local', 'Local user', 0);

-- Agents are saved assistant configurations. Every save makes a new row in `agent_versions`
-- (the history is kept and listed) and points `agents.current_version_id` at it. A
-- conversation started with an agent records the version it copied (`conversations.
-- agent_version_id`), so later edits reach new conversations only.
CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    current_version_id  TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX agents_by_user ON agents (user_id, updated_at DESC);

-- One saved state of an agent. `instructions` is the system prompt; `model` the LLM
-- (`provider/model`, NULL = server default); `meta` JSON holds the toolkit toggles,
-- `{"internal_tools": {"image_creation": true}}`.
CREATE TABLE agent_versions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT '',
    model        TEXT,
    meta         TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    UNIQUE (agent_id, version)
);

-- A conversation: its title (taken from the first user message until the user renames it,
-- see `title_is_custom`), the LLM it talks to (`provider/model`, NULL = the server default),
-- the agent it was started with, and its own internal-tool toggles as JSON
-- (`{"image_creation": bool}`), copied from the agent at creation and independent afterwards.
CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    title_is_custom INTEGER NOT NULL DEFAULT 0,
    agent_id        TEXT REFERENCES agents(id) ON DELETE SET NULL,
    agent_version_id TEXT REFERENCES agent_versions(id) ON DELETE SET NULL,
    model           TEXT,
    internal_tools  TEXT NOT NULL DEFAULT '{"image_creation":false}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at DESC);

-- The history. `role` is `user` or `assistant`. An assistant message is created when its run
-- starts (status `running`) and reaches its final state with the run: `complete`, `cancelled`
-- (keeping the partial text) or `failed` (`error_code`/`error_message` say why). `tool_calls`
-- is the JSON list of the tool calls the assistant made and their text results, so the LLM
-- sees them again in later turns (and can reuse a seed).
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
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at, id);

-- A run is one assistant turn. It outlives the HTTP request that started it; its events are
-- held in memory while it is live, and this row records how it ended, so a client that comes
-- back after a restart learns the outcome. A run still `running` at start-up was cut off by a
-- crash and is closed as failed.
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
    created_at           INTEGER NOT NULL,
    finished_at          INTEGER
);
CREATE INDEX runs_by_conversation ON runs (conversation_id, created_at);
