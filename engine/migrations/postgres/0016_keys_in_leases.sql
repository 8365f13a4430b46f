-- The runs of a key that count against its concurrency limit are the leased ones: each lease
-- keeps its run's tenant, task and key, and `leases_by_key` counts them. It replaces
-- `runs_by_concurrency_key`, an index over the whole `runs` table with an entry for each
-- unfinished run, in key order (and a new one at every update of the run, none of them HOT):
-- a claim of runs of many keys wrote a page of it per key. `leases` is small (the runs workers
-- hold), and so is its index. The queued runs of a key are in `queue_by_key`.
ALTER TABLE leases ADD COLUMN tenant TEXT;
ALTER TABLE leases ADD COLUMN task TEXT;
ALTER TABLE leases ADD COLUMN ckey TEXT;
UPDATE leases l SET tenant = r.tenant, task = r.task, ckey = r.concurrency_key
    FROM runs r WHERE r.seq = l.run_seq;
CREATE INDEX leases_by_key ON leases (tenant, task, ckey) WHERE ckey IS NOT NULL;
DROP INDEX runs_by_concurrency_key;
