-- Celery's `expires`: a run not started by `expires_at` ends cancelled (error `expired`).
-- `expiries` is the narrow table of expiries still to check, one row per run that has one; the
-- maintenance loop takes the due rows, and the next one is among its wake-up times.
ALTER TABLE runs ADD COLUMN expires_at INTEGER;
CREATE TABLE expiries (
    run_seq INTEGER PRIMARY KEY,
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX expiries_at ON expiries (at);
