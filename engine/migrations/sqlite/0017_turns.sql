-- Fair queues by turns. Each queued run of a limited task carries a turn: the first queued run
-- of a key takes the turn at the head of its task's queue, each further one the turn after its
-- key's last. Limited claims walk `queue_by_turn` from its head (priority first, then turn, then
-- age) and take the runs whose key has room: one run of each key per turn, the round-robin, from
-- one place of one index. Before, they walked `queue_by_key` key by key and deleted the head
-- entry of each key they served, a page of that index per key and claim.
--
-- A run enters the queue without a turn (whoever inserts it: the engine, an application's
-- transaction); the engine gives the turns (`sqlite/turns.rs`), in the insert's transaction
-- where it is the engine's, else before the next limited claim. No triggers: a trigger on the
-- queue makes every statement that writes it keep a statement journal, a fifth more work for
-- the claims of tasks without a limit too.
ALTER TABLE queue ADD COLUMN turn INTEGER;
UPDATE queue SET turn = t.n
  FROM (SELECT qid, row_number() OVER (PARTITION BY tenant, task, ckey ORDER BY priority DESC, qid) AS n
        FROM queue WHERE ckey IS NOT NULL) AS t
  WHERE queue.qid = t.qid;
CREATE INDEX queue_by_turn ON queue (tenant, task, priority DESC, turn, qid) WHERE ckey IS NOT NULL;
-- The runs waiting for their turn: none, mostly.
CREATE INDEX queue_unturned ON queue (qid) WHERE ckey IS NOT NULL AND turn IS NULL;
DROP INDEX queue_by_key;
-- The keys of queued runs (that have their turns): the last turn given and how many runs are
-- queued; a key without queued runs gives its next one the head's turn, and its row goes with
-- the retention pass.
CREATE TABLE concurrency_keys (
    tenant    TEXT    NOT NULL,
    task      TEXT    NOT NULL,
    ckey      TEXT    NOT NULL,
    last_turn INTEGER NOT NULL,
    queued    INTEGER NOT NULL,
    PRIMARY KEY (tenant, task, ckey)
) WITHOUT ROWID;
INSERT INTO concurrency_keys (tenant, task, ckey, last_turn, queued)
  SELECT tenant, task, ckey, max(turn), count(*) FROM queue WHERE ckey IS NOT NULL GROUP BY 1, 2, 3;
-- The key served last: the turns replace it.
DROP TABLE concurrency_cursors;
