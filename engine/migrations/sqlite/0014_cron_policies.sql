-- Schedules' overlap and catch-up policies, and the last tick that started a run (`last_tick`
-- also moves on ticks a policy skipped): the run an overlap policy looks at.
ALTER TABLE crons ADD COLUMN overlap TEXT NOT NULL DEFAULT 'allow';
ALTER TABLE crons ADD COLUMN catch_up TEXT NOT NULL DEFAULT 'latest';
ALTER TABLE crons ADD COLUMN last_fired INTEGER;
UPDATE crons SET last_fired = last_tick;
