-- Celery's `link` / `link_error`: tasks the engine schedules once a run finishes, with its output
-- (on success) or its failure (on failure). One row per run that has any, inserted with the run;
-- `done` is set once the engine has scheduled them, and a manual retry clears it.
CREATE TABLE links (
    run_seq    BIGINT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    on_success TEXT NOT NULL,
    on_error   TEXT NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX links_open ON links (run_seq) WHERE NOT done;
