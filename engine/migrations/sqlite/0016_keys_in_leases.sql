-- The runs of a key that count against its concurrency limit are the leased ones: each lease
-- keeps its run's tenant, task and key, and `leases_by_key` counts them. It replaces
-- `runs_by_concurrency_key`, an index over the whole `runs` table whose entries went at each
-- run's end: one entry per run, in key order, so that a claim of runs of many keys wrote a page
-- of it per key (a third of the frames a limited drain wrote to the WAL). `leases` is small (the
-- runs workers hold), and so is its index. The queued runs of a key are in `queue_by_key`.
ALTER TABLE leases ADD COLUMN tenant TEXT;
ALTER TABLE leases ADD COLUMN task TEXT;
ALTER TABLE leases ADD COLUMN ckey TEXT;
UPDATE leases SET (tenant, task, ckey) =
    (SELECT tenant, task, concurrency_key FROM runs WHERE runs.seq = leases.run_seq);
CREATE INDEX leases_by_key ON leases (tenant, task, ckey) WHERE ckey IS NOT NULL;
DROP INDEX runs_by_concurrency_key;
