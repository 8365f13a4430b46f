-- Concurrency limits (`#[task(concurrency = N, concurrency_key = "...")]`): each run of a limited
-- task keeps its key, and so do its queue rows; claims of limited tasks walk the queue key by key
-- (round-robin) and take at most N running runs per key. Runs of other tasks have NULL keys and
-- stay out of both indexes below.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE queue ADD COLUMN ckey TEXT;
CREATE INDEX queue_by_key ON queue (tenant, task, ckey, priority DESC, qid) WHERE ckey IS NOT NULL;
-- The unfinished runs of a key, oldest first (the cancel strategies).
CREATE INDEX runs_by_concurrency_key ON runs (tenant, task, concurrency_key, seq)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL;
-- Where the round-robin of each limited task stands: the key served last.
CREATE TABLE concurrency_cursors (
    tenant TEXT NOT NULL,
    task   TEXT NOT NULL,
    ckey   TEXT NOT NULL,
    PRIMARY KEY (tenant, task)
);
