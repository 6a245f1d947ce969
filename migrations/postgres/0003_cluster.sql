-- Scale-out: see migrations/sqlite/0006_cluster.sql for what each table and column means.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('web', 'worker')),
    name         TEXT NOT NULL,
    paints       BIGINT NOT NULL DEFAULT 0,
    provider     TEXT NOT NULL DEFAULT '',
    models       TEXT NOT NULL DEFAULT '[]',
    current_job  TEXT,
    jobs_done    BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
ALTER TABLE runs ADD COLUMN node TEXT;
ALTER TABLE runs ADD COLUMN lease_until BIGINT;
ALTER TABLE runs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN painted_by TEXT;
ALTER TABLE image_jobs ADD COLUMN position BIGINT;
CREATE TABLE run_events (
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id          BIGINT NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    progress_of BIGINT,
    PRIMARY KEY (run_id, id)
);
CREATE TABLE job_events (
    job_id      TEXT NOT NULL REFERENCES image_jobs(id) ON DELETE CASCADE,
    id          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    replaceable BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, id)
);
