-- Workspace settings and branding (issue 17).
--   identity verification: the boolean becomes a mode (off / log_only / enforce); true was enforce.
--   timezone: an IANA name, checked by the API (zoneinfo).
--   identity secret rotation: the previous secret still verifies until previous_identity_secret_expires_at.
ALTER TABLE apps
    ADD COLUMN identity_verification text NOT NULL DEFAULT 'off'
        CHECK (identity_verification IN ('off', 'log_only', 'enforce')),
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    ADD COLUMN identity_secret_rotated_at timestamptz,
    ADD COLUMN previous_identity_secret text,
    ADD COLUMN previous_identity_secret_expires_at timestamptz;
UPDATE apps SET identity_verification = 'enforce' WHERE identity_verification_required;
ALTER TABLE apps DROP COLUMN identity_verification_required;

-- The messenger's look, served to SDKs by GET /v1/app/config. One row per app, created on first change.
CREATE TABLE app_branding (
    app_id            uuid PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    color             text NOT NULL DEFAULT '#1F6FEB' CHECK (color ~ '^#[0-9A-F]{6}$'),
    launcher_position text NOT NULL DEFAULT 'right' CHECK (launcher_position IN ('left', 'right')),
    greeting          text NOT NULL DEFAULT '' CHECK (length(greeting) <= 280),
    team_intro        text NOT NULL DEFAULT '' CHECK (length(team_intro) <= 500),
    logo_sha256       text,                  -- the current logo (app_logos), NULL for none
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Logo bytes, apart from the branding row so reading the config never drags them along. Served
-- publicly at /v1/app/logo/{sha256}: the address changes with the content, so it can be cached forever.
CREATE TABLE app_logos (
    sha256       text NOT NULL,
    app_id       uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    width        integer NOT NULL,
    height       integer NOT NULL,
    bytes        bytea NOT NULL CHECK (octet_length(bytes) <= 262144),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, app_id)
);
CREATE INDEX app_logos_app_idx ON app_logos (app_id);
