-- Snoozed conversations: the snooze worker finds the due ones by time.
CREATE INDEX conversations_snoozed_until_idx ON conversations (snoozed_until) WHERE status = 'snoozed';
