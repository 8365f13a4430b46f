-- OwlClaw Tasks, PostgreSQL schema v1 (the same tables as the SQLite schema).
-- Times are microseconds since the Unix epoch (UTC) in BIGINT, as in SQLite: one encoding for
-- both stores, exact to the microsecond. JSON values are kept as TEXT, byte for byte as
-- serde_json wrote them (cast with ::jsonb for ad hoc queries). Runs are referenced internally by
-- `seq`; `id` is the public UUID.

-- Every run ever scheduled, with its current state. History lives here; the hot path works on the
-- narrow `queue`, `timers` and `leases` tables below.
CREATE TABLE runs (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    task            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL DEFAULT 0,
    max_attempts    BIGINT  NOT NULL,
    retries         BIGINT  NOT NULL,
    priority        BIGINT  NOT NULL,
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
    timeout_ms      BIGINT  NOT NULL,
    backoff         TEXT    NOT NULL,
    run_at          BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT
);
CREATE INDEX runs_by_tenant ON runs (tenant, seq);
CREATE INDEX runs_by_status ON runs (tenant, status, seq);
CREATE INDEX runs_by_task ON runs (tenant, task, seq);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Ready runs. A claim deletes from here (FOR UPDATE SKIP LOCKED), so claims never wade through
-- finished runs. Vacuumed eagerly: every row is short-lived.
CREATE TABLE queue (
    qid      BIGSERIAL PRIMARY KEY,
    run_seq  BIGINT  NOT NULL,
    tenant   TEXT    NOT NULL,
    task     TEXT    NOT NULL,
    priority BIGINT  NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX queue_order ON queue (tenant, priority DESC, qid);
CREATE INDEX queue_run ON queue (run_seq);

-- Runs waiting for a due time (delays, retry backoff).
CREATE TABLE timers (
    run_seq BIGINT PRIMARY KEY,
    due_at  BIGINT NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX timers_due ON timers (due_at);

-- Runs held by a worker. Small: at most the sum of all workers' slots.
CREATE TABLE leases (
    run_seq    BIGINT PRIMARY KEY,
    worker_id  TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    deadline   BIGINT NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX leases_by_worker ON leases (worker_id);
CREATE INDEX leases_expiry ON leases (expires_at);

-- The transition log: one row per state change, written in the same transaction.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    run_seq     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    from_status TEXT,
    to_status   TEXT   NOT NULL,
    attempt     BIGINT NOT NULL,
    worker      TEXT,
    reason      TEXT   NOT NULL
);
CREATE INDEX events_by_run ON events (run_seq, id);

-- Task definitions registered by workers.
CREATE TABLE tasks (
    tenant     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    def        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE workers (
    id             TEXT   PRIMARY KEY,
    tenant         TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    slots          BIGINT NOT NULL,
    tasks          TEXT   NOT NULL,
    labels         TEXT   NOT NULL,
    started_at     BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL
);
CREATE INDEX workers_by_tenant ON workers (tenant, last_heartbeat);

-- Cron schedules. A tick fires exactly once: `last_tick` only moves forward (a conditional
-- UPDATE that serialises engines on the row) and the tick's run id is derived from (cron, tick).
CREATE TABLE crons (
    tenant     TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    task       TEXT   NOT NULL,
    expr       TEXT   NOT NULL,
    timezone   TEXT   NOT NULL,
    input      TEXT   NOT NULL,
    last_tick  BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
