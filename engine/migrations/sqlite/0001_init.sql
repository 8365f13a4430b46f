-- OwlClaw Tasks, SQLite schema v1.
-- Times are microseconds since the Unix epoch (UTC). Runs are referenced internally by `seq`
-- (the rowid); `id` is the public UUID.

-- Every run ever scheduled, with its current state. History lives here; the hot path works on the
-- narrow `queue`, `timers` and `leases` tables below.
CREATE TABLE runs (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    task            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    retries         INTEGER NOT NULL,
    priority        INTEGER NOT NULL,
    input           TEXT    NOT NULL,
    output          TEXT,
    error           TEXT,
    errors          TEXT,
    owner           TEXT,
    idempotency_key TEXT,
    parent_id       TEXT,
    metadata        TEXT,
    worker          TEXT,
    worker_id       TEXT,
    timeout_ms      INTEGER NOT NULL,
    backoff         TEXT    NOT NULL,
    run_at          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX runs_by_tenant ON runs (tenant, seq);
CREATE INDEX runs_by_status ON runs (tenant, status, seq);
CREATE INDEX runs_by_task ON runs (tenant, task, seq);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Ready runs. A claim deletes from here, so claims never wade through finished runs.
CREATE TABLE queue (
    qid      INTEGER PRIMARY KEY,
    run_seq  INTEGER NOT NULL,
    tenant   TEXT    NOT NULL,
    task     TEXT    NOT NULL,
    priority INTEGER NOT NULL
);
CREATE INDEX queue_order ON queue (tenant, priority DESC, qid);
CREATE INDEX queue_run ON queue (run_seq);

-- Runs waiting for a due time (delays, retry backoff).
CREATE TABLE timers (
    run_seq INTEGER PRIMARY KEY,
    due_at  INTEGER NOT NULL
);
CREATE INDEX timers_due ON timers (due_at);

-- Runs held by a worker. Small: at most the sum of all workers' slots.
CREATE TABLE leases (
    run_seq    INTEGER PRIMARY KEY,
    worker_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    deadline   INTEGER NOT NULL
);

-- The transition log: one row per state change, written in the same transaction.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    run_seq     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT,
    reason      TEXT    NOT NULL
);
CREATE INDEX events_by_run ON events (run_seq, id);

-- Task definitions registered by workers.
CREATE TABLE tasks (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    def        TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    slots          INTEGER NOT NULL,
    tasks          TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
);

-- Cron schedules. A tick fires exactly once: its run id is derived from (cron, tick).
CREATE TABLE crons (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    task       TEXT    NOT NULL,
    expr       TEXT    NOT NULL,
    timezone   TEXT    NOT NULL,
    input      TEXT    NOT NULL,
    last_tick  INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
