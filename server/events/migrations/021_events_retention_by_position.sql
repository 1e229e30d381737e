-- Retention deletes the oldest events in position order (workers/event_retention.py), which is
-- their time order but for transactions still open across the cut: the time index only cost an
-- index entry on every commit.
DROP INDEX domain_events_time;
