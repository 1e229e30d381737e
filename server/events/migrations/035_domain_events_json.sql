-- The cost of an event on the commit path, measured (docs/benchmarks.md, "The event log on and
-- off"): most of it was not the insert but ANALYZE. Autovacuum re-analyzes a growing table at every
-- 10 % of growth, sampling up to 30,000 rows, and for a jsonb column it sorts the sample with jsonb
-- comparison to build statistics no plan uses (no query filters on `data` or the subject ids).
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
