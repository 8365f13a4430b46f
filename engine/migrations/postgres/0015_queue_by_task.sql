-- Queued runs by task: a worker that serves one task claims with a seek here, however many runs
-- of other tasks wait ahead of its own in `queue_order` (which a claim would otherwise walk,
-- skipping them one by one). Claims for several tasks keep walking `queue_order` in order.
--
-- The task column is indexed under the "C" collation, and only the one-task claim compares it
-- under that collation (`task COLLATE "C" = ...`), so no other statement can use this index: a
-- planner without statistics (a table never analyzed) took it for the limited claims' key walks
-- and for the several-task claim, and read and sorted every queued run of the task each time.
CREATE INDEX queue_by_task ON queue (tenant, task COLLATE "C", priority DESC, qid);
