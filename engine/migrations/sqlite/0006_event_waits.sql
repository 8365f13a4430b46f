-- Durable event waits (`ctx.wait_for_event`): one row per wait step of a run. While
-- `event_seq` is NULL the run is parked (`scheduled` until `deadline`) and a pushed event
-- of `key` whose payload matches `filter` ends the wait; the event that ended it is kept in
-- `event_seq`, so a later wait of the same run does not take it again.
CREATE TABLE event_waits (
    run_seq   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    tenant    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    filter    TEXT    NOT NULL,
    deadline  INTEGER NOT NULL,
    event_seq INTEGER,
    PRIMARY KEY (run_seq, position)
);
CREATE INDEX event_waits_open ON event_waits (tenant, key) WHERE event_seq IS NULL;
-- A wait looks for the first event of its key pushed since its run was created.
CREATE INDEX pushed_events_by_time ON pushed_events (tenant, key, created_at, seq);
