-- Fair queues by turns, as in SQLite (`sqlite/0017_turns.sql`). Each queued run of a limited
-- task carries a turn: the first queued run of a key takes the turn at the head of its task's
-- queue, each further one the turn after its key's last. Limited claims read `queue_by_turn`
-- from its head (priority first, then turn, then age) and take the runs whose key has room: one
-- run of each key per turn, the round-robin, from one place of one index. Before, they walked
-- the keys one by one from the key served last (a probe of `queue_by_key` per key, and one
-- more per key for its runs), five statements or more per claim.
ALTER TABLE queue ADD COLUMN turn BIGINT;
UPDATE queue SET turn = t.n
  FROM (SELECT qid, row_number() OVER (PARTITION BY tenant, task, ckey ORDER BY priority DESC, qid) AS n
        FROM queue WHERE ckey IS NOT NULL) AS t
  WHERE queue.qid = t.qid;
CREATE INDEX queue_by_turn ON queue (tenant, task, priority DESC, turn, qid) WHERE ckey IS NOT NULL;
-- A key's queued runs (the cancel strategies) and its last turn, first. The key leads: a
-- statement that names the task but no key cannot use this index, and the planner, which has
-- no statistics on a new table (nor on any where autovacuum is off), once took it, and a sort
-- of all the task's runs, for the walk of `queue_by_turn`.
DROP INDEX queue_by_key;
CREATE INDEX queue_by_key ON queue (ckey, tenant, task, turn DESC NULLS LAST) WHERE ckey IS NOT NULL;
-- A run gets its turn as it enters the queue under a key, whoever puts it there (the engine's
-- inserts, an application's transaction, a worker registering a limit that puts waiting runs
-- under the empty key): from the queue as it stands, the head and the key's last turn, two
-- seeks. (The bulk insert of new runs gives the turns itself, two seeks per key, and the
-- trigger passes over rows that have one.) Rows inserted earlier by the same statement are seen (a BEFORE ROW trigger's queries
-- see them), so a batch of one key's runs takes successive turns. Two transactions queueing runs
-- of one key at once may give two of them the same turn: the key then has two runs in that
-- turn, nothing worse.
CREATE FUNCTION owlclaw_queue_turn() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head BIGINT;
    last BIGINT;
BEGIN
    SELECT q.turn INTO head FROM queue q
        WHERE q.tenant = NEW.tenant AND q.task = NEW.task AND q.ckey IS NOT NULL
        ORDER BY q.priority DESC, q.turn, q.qid LIMIT 1;
    SELECT q.turn INTO last FROM queue q
        WHERE q.ckey = NEW.ckey AND q.tenant = NEW.tenant AND q.task = NEW.task
        ORDER BY q.turn DESC NULLS LAST LIMIT 1;
    NEW.turn := greatest(coalesce(head, 0), last + 1);
    RETURN NEW;
END
$$;
CREATE TRIGGER queue_turn BEFORE INSERT OR UPDATE OF ckey ON queue
    FOR EACH ROW WHEN (NEW.ckey IS NOT NULL AND NEW.turn IS NULL)
    EXECUTE FUNCTION owlclaw_queue_turn();
-- The key served last: the turns replace it.
DROP TABLE concurrency_cursors;
