-- pochta schema version 4: a queue entry keeps its whole storage.QueueEntry
-- as JSON (entry), as the bbolt backend does, with exact times; the columns
-- of version 1 that queries select on (status, source, username, sender,
-- message_id, lease) are kept in step with it. due_ns is when the entry is
-- next due in Unix nanoseconds (outbox: its next attempt or the end of its
-- lease, whichever is later; held: held until; settled: NULL).
ALTER TABLE queue ADD COLUMN entry jsonb;
ALTER TABLE queue ADD COLUMN due_ns bigint;
CREATE INDEX queue_due_ns ON queue (due_ns, id) WHERE due_ns IS NOT NULL;
