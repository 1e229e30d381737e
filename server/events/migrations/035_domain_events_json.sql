-- The cost of an event on the commit path, measured (docs/benchmarks.md, "The Postgres cost of an
-- event"): a large part of it was not the insert but autovacuum's ANALYZE. A young, growing table is
-- re-analyzed at every 10 % of growth, each time sampling up to 30,000 rows and computing
-- statistics for every column, `data` and the subject ids included, though no plan uses them:
-- 32 - 37 µs of autovacuum time an event in a messages bench run, 7 µs with this migration.
--
-- `data` as json: written as built (json_build_object, no binary form), read back as the text it
-- is (the relay concatenates it into the envelope). Nothing queries inside it. The rewrite takes
-- the table's lock for its duration: run it while the table is small or in a quiet window.
ALTER TABLE domain_events ALTER COLUMN data TYPE json USING data::json;

-- Statistics only where a plan uses them: position (tx, seq), workspace and type (the events
-- route), and from a sample of 3,000 rows instead of 30,000 (every plan on this table is an index
-- scan in position or (app_id, seq) order under a LIMIT, which a coarse histogram does not change).
ALTER TABLE domain_events
    ALTER COLUMN data SET STATISTICS 0,
    ALTER COLUMN conversation_id SET STATISTICS 0,
    ALTER COLUMN user_id SET STATISTICS 0,
    ALTER COLUMN admin_id SET STATISTICS 0,
    ALTER COLUMN occurred_at SET STATISTICS 0,
    ALTER COLUMN version SET STATISTICS 0,
    ALTER COLUMN tx SET STATISTICS 10,
    ALTER COLUMN seq SET STATISTICS 10,
    ALTER COLUMN app_id SET STATISTICS 10,
    ALTER COLUMN type SET STATISTICS 10;
