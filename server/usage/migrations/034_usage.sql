-- Usage: what a workspace used each UTC day, counted as it happens (server/usage/).
--   conversations, messages.user|admin|note|bot|system   the `usage` consumer group (domain events)
--   broadcast_recipients, workflow_runs                   the same group, from broadcast.* / workflow.*
--   webhook_deliveries                                    the statement trigger below
--   api_calls.secret                                      Redis counters flushed in batches
CREATE TABLE usage_daily (
    app_id  uuid   NOT NULL,
    day     date   NOT NULL,
    metric  text   NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (app_id, day, metric)
);

-- Monthly active SDK users, exact: one row per user seen in a month (first_day: the first UTC day).
CREATE TABLE usage_active_users (
    app_id    uuid NOT NULL,
    month     date NOT NULL,  -- the first day of the month
    user_id   uuid NOT NULL,
    first_day date NOT NULL,
    PRIMARY KEY (app_id, month, user_id)
);

-- The Redis batches of API call counts already added: a flush retried after its commit (the
-- replica died before deleting the batch from Redis) adds nothing twice.
CREATE TABLE usage_flushes (
    batch_id   text PRIMARY KEY,
    flushed_at timestamptz NOT NULL DEFAULT now()
);

-- A user is seen when they are created or their last_seen_at moves (identify): recorded for the
-- month once, when last_seen_at enters a month it was not in (the WHEN clause keeps every other
-- write of end_users free of it). Senders of messages are recorded by the consumer group.
CREATE FUNCTION usage_user_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_active_users (app_id, month, user_id, first_day)
    VALUES (NEW.app_id, date_trunc('month', NEW.last_seen_at AT TIME ZONE 'UTC')::date, NEW.id,
            (NEW.last_seen_at AT TIME ZONE 'UTC')::date)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_user_created AFTER INSERT ON end_users
    FOR EACH ROW EXECUTE FUNCTION usage_user_seen();
CREATE TRIGGER usage_user_seen AFTER UPDATE OF last_seen_at ON end_users
    FOR EACH ROW WHEN (date_trunc('month', OLD.last_seen_at AT TIME ZONE 'UTC')
                       IS DISTINCT FROM date_trunc('month', NEW.last_seen_at AT TIME ZONE 'UTC'))
    EXECUTE FUNCTION usage_user_seen();

-- Webhook deliveries (one per event and endpoint, and pings): counted per statement in the
-- transaction that inserts them (the webhooks consumer's batch, a ping), so always equal to a
-- recount of webhook_deliveries by created_at.
CREATE FUNCTION usage_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily (app_id, day, metric, count)
    SELECT app_id, (created_at AT TIME ZONE 'UTC')::date, 'webhook_deliveries', count(*)
    FROM new_rows GROUP BY 1, 2
    ON CONFLICT (app_id, day, metric) DO UPDATE SET count = usage_daily.count + EXCLUDED.count;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_webhook_deliveries AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_webhook_deliveries();

-- What existed before this migration: this month's users and senders, past deliveries.
INSERT INTO usage_active_users (app_id, month, user_id, first_day)
SELECT app_id, date_trunc('month', last_seen_at AT TIME ZONE 'UTC')::date, id, (last_seen_at AT TIME ZONE 'UTC')::date
FROM end_users ON CONFLICT DO NOTHING;
INSERT INTO usage_daily (app_id, day, metric, count)
SELECT app_id, (created_at AT TIME ZONE 'UTC')::date, 'webhook_deliveries', count(*)
FROM webhook_deliveries GROUP BY 1, 2;

UPDATE roles SET permissions = permissions || ARRAY['usage.read']
    WHERE name IN ('owner', 'admin') AND NOT 'usage.read' = ANY(permissions);
