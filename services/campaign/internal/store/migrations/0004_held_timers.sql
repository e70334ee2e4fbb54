-- A paused campaign holds its running enrollments at their next step.
-- They used to stay in the timer index, where the scheduler stepped over
-- every due one on each tick (85-190 ms a tick with 300k due, every
-- second, on every replica, for as long as the pause lasted). Pausing now
-- marks them held, out of the index; resuming puts them back.
ALTER TABLE enrollments ADD COLUMN held boolean NOT NULL DEFAULT false;

UPDATE enrollments e SET held = true
FROM campaigns c
WHERE c.tenant = e.tenant AND c.id = e.campaign_id AND c.state = 2 AND e.status = 'ACTIVE';

DROP INDEX enrollments_due;
CREATE INDEX enrollments_due ON enrollments (due_at) WHERE status = 'ACTIVE' AND NOT held;
