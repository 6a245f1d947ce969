-- Scale-out (issue 12): several processes share one database (PostgreSQL in practice; the
-- same tables exist on SQLite so both schemas stay alike).
--
-- `nodes`: every running Easel process, web node or image worker, with a heartbeat. A
-- painting node lists the models it serves (`models`: JSON descriptions, enough for any node
-- to check requests for them) and its execution provider; `current_job` and `jobs_done` feed
-- the admin's view. A node whose heartbeat stops is gone: its runs are closed and its jobs
-- go back to the queue when their leases run out.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('web', 'worker')),
    name         TEXT NOT NULL,
    paints       INTEGER NOT NULL DEFAULT 0,
    provider     TEXT NOT NULL DEFAULT '',
    models       TEXT NOT NULL DEFAULT '[]',
    current_job  TEXT,
    jobs_done    INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

-- A run is driven by one node (`node`), which renews `lease_until`; a run whose lease ran out
-- is closed as interrupted by whichever node notices. `cancel_requested` reaches the driving
-- node when the cancel came to another one.
ALTER TABLE runs ADD COLUMN node TEXT;
ALTER TABLE runs ADD COLUMN lease_until INTEGER;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- The node that painted a finished job (throughput per worker in the admin's view).
ALTER TABLE image_jobs ADD COLUMN painted_by TEXT;
-- A queued job's last announced place in the queue (each change is announced once, whichever
-- node computes it).
ALTER TABLE image_jobs ADD COLUMN position INTEGER;

-- Events kept for followers on other nodes and for `Last-Event-ID` resumes anywhere: a run's
-- events with the ids its driving node gave them; a job's events as its worker wrote them.
-- Progress events replace the previous one of the same image (`progress_of`), so a long run
-- keeps few rows.
CREATE TABLE run_events (
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    progress_of INTEGER,
    PRIMARY KEY (run_id, id)
);
CREATE TABLE job_events (
    job_id      TEXT NOT NULL REFERENCES image_jobs(id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    replaceable INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, id)
);
