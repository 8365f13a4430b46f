-- Durable steps: one row per step position of a run, committed before the task goes on.
CREATE TABLE steps (
    run_seq     BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    output      TEXT,
    error       TEXT,
    attempt     BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (run_seq, position)
);
