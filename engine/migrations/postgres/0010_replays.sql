-- How many times a run was replayed from a step: a durable spawn after the replayed step keys
-- its child with it, so that the child is started afresh rather than found again.
ALTER TABLE runs ADD COLUMN replays BIGINT NOT NULL DEFAULT 0;
