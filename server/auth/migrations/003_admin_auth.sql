-- Admin auth: rotating refresh tokens and team invitations. Login rate limits live in Redis.

-- Opaque refresh tokens, stored only as sha256. Each login starts a family; every refresh
-- replaces the presented token with a new one of the same family. Presenting a token that
-- was already replaced means it leaked: the whole family is revoked.
CREATE TABLE admin_refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    admin_id    uuid NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    app_id      uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaced_by uuid REFERENCES admin_refresh_tokens(id) ON DELETE SET NULL
);
CREATE INDEX admin_refresh_tokens_family_idx ON admin_refresh_tokens (family_id);
CREATE INDEX admin_refresh_tokens_admin_idx ON admin_refresh_tokens (admin_id);

-- An invitation names an admin row created with a NULL password; accepting it sets one.
CREATE TABLE admin_invitations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id      uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    admin_id    uuid NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    email       text NOT NULL,
    role        text NOT NULL REFERENCES roles(name),
    token_hash  text NOT NULL UNIQUE,
    invited_by  uuid REFERENCES admins(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX admin_invitations_admin_idx ON admin_invitations (admin_id);

-- Team screens list an app's active members; last-owner checks count them.
CREATE INDEX admins_app_role_idx ON admins (app_id, role) WHERE disabled_at IS NULL;
