-- A paused cron schedule fires nothing; NULL: active. Resuming sets `last_tick` to the time of
-- the resume, so that the ticks missed while paused are not fired.
ALTER TABLE crons ADD COLUMN paused_at INTEGER;
