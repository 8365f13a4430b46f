-- Queued runs by task, in claim order, instead of the tenant's whole queue in claim order: a
-- claim seeks each of the worker's tasks (a few index probes, in-process) and merges them, so a
-- backlog of other tasks never slows it; before, it walked `queue_order` past every run of other
-- tasks queued ahead of its own. One index replaces the other: the queue's writes cost the same.
CREATE INDEX queue_by_task ON queue (tenant, task, priority DESC, qid);
DROP INDEX queue_order;
