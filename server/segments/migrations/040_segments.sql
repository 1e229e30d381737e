-- Segments: saved audience filters (server/segments/filters.py is the tree, compile.py its SQL).
CREATE TABLE segments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id      uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        text NOT NULL,
    filter      jsonb NOT NULL,
    created_by  uuid REFERENCES admins(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX segments_app_idx ON segments (app_id, created_at DESC);
