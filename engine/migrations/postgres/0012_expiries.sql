-- Celery's `expires`: a run not started by `expires_at` ends cancelled (error `expired`).
-- `expiries` is the narrow table of expiries still to check, one row per run that has one; the
-- maintenance loop takes the due rows, and the next one is among its wake-up times.
ALTER TABLE runs ADD COLUMN expires_at BIGINT;
CREATE TABLE expiries (
    run_seq BIGINT PRIMARY KEY,
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX expiries_at ON expiries (at);
