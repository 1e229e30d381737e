-- Broadcasts: one message to every user of an audience, now, once at a time or on a cron.
-- A broadcast has runs (one per occurrence); a run snapshots its audience into
-- broadcast_recipients, then a per-broadcast actor sends them in `ord` ranges (batches).
CREATE TABLE broadcasts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id       uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name         text NOT NULL,
    status       text NOT NULL DEFAULT 'draft'
                 CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'completed', 'cancelled', 'failed')),
    message      jsonb NOT NULL,            -- {text, sender_admin_id, button_url, button_label}
    audience     jsonb NOT NULL,            -- {segment_id} or {filter}
    schedule     jsonb NOT NULL,            -- {kind: now|once|recurring, at, timezone, cron, end_at, every_occurrence}
    rate_per_s   integer NOT NULL,
    next_run_at  timestamptz,               -- the scheduler's next occurrence; null when none is due
    created_by   uuid REFERENCES admins(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX broadcasts_app_idx ON broadcasts (app_id, created_at DESC);
CREATE INDEX broadcasts_due_idx ON broadcasts (next_run_at) WHERE next_run_at IS NOT NULL;

-- One per occurrence: (broadcast_id, scheduled_for) is unique, so replicas ticking the same
-- occurrence create one run.
CREATE TABLE broadcast_runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    broadcast_id    uuid NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    app_id          uuid NOT NULL,
    scheduled_for   timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'snapshotting', 'sending', 'paused', 'completed', 'cancelled', 'failed')),
    snapshot_after  uuid,                    -- keyset cursor: the last user id the snapshot copied
    snapshot_done   boolean NOT NULL DEFAULT false,
    sent_through    bigint NOT NULL DEFAULT 0, -- checkpoint: recipients with ord <= this were sent
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (broadcast_id, scheduled_for)
);
CREATE INDEX broadcast_runs_active_idx ON broadcast_runs (broadcast_id)
    WHERE status IN ('pending', 'snapshotting', 'sending', 'paused');

-- The audience snapshot of a run, and each recipient's delivery. `ord` numbers the snapshot
-- (1..targeted) so batches are ranges; the delivery id the SDK sees is "<run_id>.<ord>".
-- state only moves forward: 0 queued, 1 sent, 2 delivered, 3 read (4 failed is terminal).
CREATE TABLE broadcast_recipients (
    run_id          uuid NOT NULL REFERENCES broadcast_runs(id) ON DELETE CASCADE,
    ord             bigint NOT NULL,
    user_id         uuid NOT NULL,
    state           smallint NOT NULL DEFAULT 0,
    sent_at         timestamptz,
    delivered_at    timestamptz,
    read_at         timestamptz,
    clicked_at      timestamptz,
    replied_at      timestamptz,
    conversation_id uuid,                    -- the conversation a reply started
    failed_reason   text,
    PRIMARY KEY (run_id, ord),
    UNIQUE (run_id, user_id)
) WITH (fillfactor = 50);
-- No index names state (nor a timestamp), and pages keep half their room: moving a recipient
-- forward (sent, delivered, read) is then a HOT update, with no index entry to write. The send
-- batches update every row of the pages they cover, so they need that room all at once.
CREATE INDEX broadcast_recipients_user_idx ON broadcast_recipients (user_id);

-- Per run counters, kept incrementally (sent by the actor's batch transaction; delivered, read,
-- clicked, replied and failed by the broadcast-stats consumer group). "delivered" counts
-- recipients who reached at least delivered, so a read without a delivered receipt counts both.
CREATE TABLE broadcast_stats (
    run_id        uuid PRIMARY KEY REFERENCES broadcast_runs(id) ON DELETE CASCADE,
    broadcast_id  uuid NOT NULL,
    app_id        uuid NOT NULL,
    targeted      bigint NOT NULL DEFAULT 0,
    sent          bigint NOT NULL DEFAULT 0,
    delivered     bigint NOT NULL DEFAULT 0,
    read          bigint NOT NULL DEFAULT 0,
    replied       bigint NOT NULL DEFAULT 0,
    clicked       bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0
);
CREATE INDEX broadcast_stats_broadcast_idx ON broadcast_stats (broadcast_id);

-- The same counts per minute, for the chart over time.
CREATE TABLE broadcast_stats_minutes (
    run_id     uuid NOT NULL REFERENCES broadcast_runs(id) ON DELETE CASCADE,
    minute     timestamptz NOT NULL,
    sent       bigint NOT NULL DEFAULT 0,
    delivered  bigint NOT NULL DEFAULT 0,
    read       bigint NOT NULL DEFAULT 0,
    replied    bigint NOT NULL DEFAULT 0,
    clicked    bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, minute)
);
