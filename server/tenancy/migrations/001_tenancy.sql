-- Tenancy: apps (workspaces) are the tenant; API keys, admins and roles hang off them.

CREATE TABLE roles (
    name        text PRIMARY KEY,
    rank        integer NOT NULL,            -- higher = more privileged; owner > admin > agent > viewer
    permissions text[] NOT NULL
);

INSERT INTO roles (name, rank, permissions) VALUES
  ('owner', 40, ARRAY['conversations.read','conversations.reply','conversations.assign','users.read',
                      'users.write','broadcasts.read','broadcasts.write','workflows.read','workflows.write',
                      'analytics.read','settings.read','settings.write','team.read','team.write',
                      'api_keys.read','api_keys.write','billing.read','billing.write','webhooks.read',
                      'webhooks.write']),
  ('admin', 30, ARRAY['conversations.read','conversations.reply','conversations.assign','users.read',
                      'users.write','broadcasts.read','broadcasts.write','workflows.read','workflows.write',
                      'analytics.read','settings.read','settings.write','team.read','team.write',
                      'api_keys.read','api_keys.write','billing.read','webhooks.read','webhooks.write']),
  ('agent', 20, ARRAY['conversations.read','conversations.reply','conversations.assign','users.read',
                      'broadcasts.read','workflows.read','analytics.read','settings.read','team.read']),
  ('viewer', 10, ARRAY['conversations.read','users.read','broadcasts.read','workflows.read',
                       'analytics.read','settings.read','team.read']);

CREATE TABLE apps (
    id                             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    identity_secret                text NOT NULL,
    identity_verification_required boolean NOT NULL DEFAULT false,
    settings                       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admins (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id        uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    email         text NOT NULL,
    name          text NOT NULL DEFAULT '',
    password_hash text,                      -- NULL until an invited teammate sets one
    role          text NOT NULL REFERENCES roles(name),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    disabled_at   timestamptz
);
-- One login identity per email: login finds the admin (and so the app) by email.
CREATE UNIQUE INDEX admins_email_key ON admins (lower(email));
CREATE INDEX admins_app_idx ON admins (app_id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id       uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('publishable', 'secret')),
    name         text NOT NULL DEFAULT '',
    prefix       text NOT NULL,              -- short visible part, shown in the UI and used for lookup
    api_key_hash text NOT NULL UNIQUE,       -- sha256 of the whole key; the key itself is never stored
    api_key      text,                       -- legacy plaintext key of pre-hash installs; NULL for new keys
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);
CREATE INDEX api_keys_app_idx ON api_keys (app_id);
CREATE UNIQUE INDEX api_keys_legacy_key ON api_keys (api_key) WHERE api_key IS NOT NULL;
