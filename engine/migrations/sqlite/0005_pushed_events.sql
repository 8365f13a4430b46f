-- Events pushed to the engine (`POST /v1/events`). An id is stored once per tenant: the row is
-- written in the same transaction as the runs the event starts, so a push retried after a
-- crash starts each subscriber's run exactly once. `runs` is the JSON array of their ids.
CREATE TABLE pushed_events (
    seq        INTEGER PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    runs       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
CREATE INDEX pushed_events_by_key ON pushed_events (tenant, key, seq);
