-- Updates of `runs` that PostgreSQL makes in place (HOT): no index of `runs` covers a column
-- the life cycle changes. A run's claim and its completion each rewrote the row, and since both
-- changed `status` (in `runs_by_status`) and the completion `finished_at` (in `runs_finished`),
-- neither could be a heap-only update: each new version took an entry in every index of the
-- table (five or six, sixteen index entries per run), and went to any page with room, which in a
-- store holding a long history was an old page, read back and logged whole after each checkpoint.
-- Without those two indexes the new versions stay in their page, reached through the old
-- entries, and the page's dead versions are pruned as it fills.
--
-- A new version goes in its page only if the page has room for it: a page filled to the brim by
-- the runs' inserts had none, and the first update of each run went elsewhere, not in place. Pages
-- are now filled to half by inserts (pages added from now on), which leaves room for the claim's
-- new versions of all of a page's runs at once (a claim takes a page's runs in one statement,
-- and their old versions can only be pruned after it commits); the completions that follow find
-- the claims' old versions prunable. In the benchmark's drain, 87 % of the updates of `runs`
-- were then in place, against 56 % with pages filled to 70 % and none before
-- (`bench/README.md`, 2026-12-06). The table was no larger for it after that drain (14 MB,
-- against 15 MB at 70 % and 16 MB before): updates that do not fit take room elsewhere.
ALTER TABLE runs SET (fillfactor = 50);
--
-- What the two indexes served comes from the narrow tables: the runs of a status from `leases`
-- (running) and, for the three final statuses, `finished` below (one row per finished run,
-- written once when it ends), and counts of queued runs from `queue`; `runs.status` stays the
-- run's status, read with it. Lists of queued and scheduled runs, mostly the newest, walk
-- `runs_by_tenant` from the newest.
CREATE TABLE finished (
    run_seq     BIGINT PRIMARY KEY,
    tenant      TEXT   NOT NULL,
    task        TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    finished_at BIGINT NOT NULL
);
-- A status's runs, newest first (the dashboard's lists and counts).
CREATE INDEX finished_by_status ON finished (tenant, status, run_seq);
-- Retention's purge, and the runs ended per minute.
CREATE INDEX finished_at ON finished (finished_at);
INSERT INTO finished (run_seq, tenant, task, status, finished_at)
    SELECT seq, tenant, task, status, COALESCE(finished_at, created_at) FROM runs
    WHERE status IN ('succeeded', 'failed', 'cancelled');
DROP INDEX runs_by_status;
DROP INDEX runs_finished;
