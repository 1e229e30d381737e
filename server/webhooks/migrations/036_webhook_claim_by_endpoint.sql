-- Claims walk the endpoints that have pending deliveries and take each one's oldest due ones (up to
-- its free slots): one index by (endpoint, due time) serves that walk, the per-endpoint pick and
-- the pending count; it replaces the two it covers.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_pending;
