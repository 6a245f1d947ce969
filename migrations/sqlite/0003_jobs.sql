-- Image jobs and the durability rules of issue 9/10.
--
-- Every image, whoever asks for it (the chat tool, Image Studio, the /v1 API, the command
-- line), is made by an image job: a durable record of who asked, where from, the validated
-- request, where it stands, its progress and timings. Jobs survive restarts: queued ones run,
-- a running one starts again from its seed (same pixels), `/v1` ones are cancelled (their
-- client is gone). Times are UTC milliseconds.
CREATE TABLE image_jobs (
    id              TEXT PRIMARY KEY,              -- UUIDv7: ordering by id is arrival order
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,   -- the owner
    source          TEXT NOT NULL CHECK (source IN ('chat', 'studio', 'api', 'cli')),
    -- A chat job belongs to the assistant message (and tool call) it paints for; its images
    -- are stored on that message, also when the reply itself was cut off.
    conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages(id) ON DELETE CASCADE,
    tool_call_id    TEXT,
    first_index     INTEGER NOT NULL DEFAULT 0,   -- message-level index of the first image
    model           TEXT NOT NULL,
    n               INTEGER NOT NULL,             -- images asked for (the queue is counted in images)
    request         TEXT NOT NULL,                -- the validated request, JSON
    source_png      BLOB,                         -- an edit's source, already at the job's size
    mask_png        BLOB,                         -- an edit's mask, already at the job's size
    latents         BLOB,                         -- caller-given initial latents (f32 LE), rare
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    step            INTEGER NOT NULL DEFAULT 0,   -- progress of the running attempt
    steps           INTEGER NOT NULL DEFAULT 0,
    images_done     INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,   -- how many times it started (restarts)
    error_code      TEXT,
    error_message   TEXT,
    worker          TEXT,                         -- the process running it
    lease_until     INTEGER,                      -- that process's lease (scale-out)
    queued_at       INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    engine_ms       INTEGER NOT NULL DEFAULT 0    -- measured engine time, for usage and pricing
);
CREATE INDEX image_jobs_queue ON image_jobs (state, queued_at, id);
CREATE INDEX image_jobs_by_owner ON image_jobs (user_id, started_at);
CREATE INDEX image_jobs_by_message ON image_jobs (message_id);

-- Images gain their job and a `cli` source. SQLite cannot change a CHECK constraint in place,
-- so the table is rebuilt (nothing references `images`, so this is safe with foreign keys on).
CREATE TABLE images_new (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages(id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
    job_id          TEXT REFERENCES image_jobs(id) ON DELETE SET NULL,
    source          TEXT NOT NULL DEFAULT 'chat' CHECK (source IN ('chat', 'studio', 'api', 'cli')),
    position        INTEGER NOT NULL DEFAULT 0,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    png             BLOB NOT NULL,
    jpeg            BLOB,
    thumbnail       BLOB NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
INSERT INTO images_new (id, user_id, message_id, conversation_id, source, position, width, height, png, jpeg, thumbnail, metadata, created_at)
    SELECT id, user_id, message_id, conversation_id, source, position, width, height, png, jpeg, thumbnail, metadata, created_at FROM images;
DROP TABLE images;
ALTER TABLE images_new RENAME TO images;
CREATE INDEX images_by_message ON images (message_id, position);
CREATE INDEX images_by_conversation ON images (conversation_id, message_id, position);
CREATE INDEX images_by_user_source ON images (user_id, source, created_at DESC);
-- A job stores each of its images once, also when it runs again after a restart.
CREATE UNIQUE INDEX images_by_job ON images (job_id, position) WHERE job_id IS NOT NULL;

-- One running reply per conversation, enforced by the database (the server checks in the same
-- write transaction; this index is what makes the check hold under any race or node count).
-- Runs left running by an older version are closed first, so the index can be built.
UPDATE runs SET status = 'failed', error_code = 'interrupted',
       error_message = 'The server stopped during this run.'
 WHERE status = 'running';
CREATE UNIQUE INDEX runs_one_running ON runs (conversation_id) WHERE status = 'running';
