-- Workflow runs the engine advances: one row per run of a workflow, inserted with the run.
-- `done` is set once the run is finished and every task run it started is too; a manual
-- retry clears it. The engines' workflow loop walks the rows not done.
CREATE TABLE workflow_runs (
    run_seq INTEGER PRIMARY KEY,
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    done    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX workflow_runs_active ON workflow_runs (run_seq) WHERE done = 0;
-- A workflow run's task runs are its children.
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
