-- message.created records its message's sender kind and whether it is a private note, from the
-- same row the commit inserts: the by-reference data the relay puts on the stream carries them
-- (server/events/store.py), so the usage group counts messages by sender without reading each
-- message back (a primary-key probe an event in its batch's statement, and the message ids sent
-- there: about 3 µs of Postgres and 3 µs of the worker process a message, docs/benchmarks.md).
-- A few bytes a row. Rows written before this migration leave both NULL: a read takes them from
-- the message instead, as before.
ALTER TABLE domain_events
    ADD COLUMN sender_kind text,
    ADD COLUMN is_note boolean;
ALTER TABLE domain_events
    ALTER COLUMN sender_kind SET STATISTICS 0,
    ALTER COLUMN is_note SET STATISTICS 0;
