-- Team: when each member was last active (any authenticated request or socket event), written at
-- most once a minute per admin; pending invitations are listed per app.
ALTER TABLE admins ADD COLUMN last_active_at timestamptz;
CREATE INDEX admin_invitations_pending_idx ON admin_invitations (app_id)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
