-- Rate limits (`owlclaw ratelimit set stripe --limit 100 --per 1s`): a named budget of units per
-- period in each tenant. A task that spends one keeps each run's bucket key where a concurrency
-- limit keeps its key (`runs.concurrency_key`, `queue.ckey`; a task has one limit or the other),
-- so claims walk the keys of both kinds the same way.
CREATE TABLE rate_limits (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    lim    BIGINT NOT NULL,
    per_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
-- Each key's token bucket: the units it held at `at_us` (a claim refills it for the time since,
-- up to the limit). No row: a full bucket.
CREATE TABLE rate_buckets (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    rkey   TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    at_us  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name, rkey)
);
