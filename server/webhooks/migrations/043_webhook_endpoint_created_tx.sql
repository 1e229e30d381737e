-- The transaction that created an endpoint: it gets the events recorded after that one (by position),
-- the order in which the webhooks group reads them and learns which workspaces have an endpoint.
-- Endpoints made before keep 0: their rule stays `created_at <= occurred_at`, checked as well.
ALTER TABLE webhook_endpoints ADD COLUMN created_tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE webhook_endpoints ALTER COLUMN created_tx SET DEFAULT pg_current_xact_id();
