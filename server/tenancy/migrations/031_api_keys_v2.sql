-- API keys v2: scopes (secret keys), creator, last use address, expiry (rotation grace), lineage.
-- Keys keep working: existing secret keys get every permission as their scopes.

-- A legacy plaintext key (api_key) may have no hash until its first use hashes it.
ALTER TABLE api_keys ALTER COLUMN api_key_hash DROP NOT NULL;
ALTER TABLE api_keys
    ADD COLUMN scopes       text[],          -- secret keys: the RBAC permissions they may use; NULL for publishable
    ADD COLUMN created_by   uuid REFERENCES admins(id) ON DELETE SET NULL,
    ADD COLUMN last_used_ip text,
    ADD COLUMN expires_at   timestamptz,     -- set by a rotation (the grace period) or at creation
    ADD COLUMN rotated_from uuid REFERENCES api_keys(id) ON DELETE SET NULL;

UPDATE api_keys SET scopes = (SELECT array_agg(DISTINCT p ORDER BY p) FROM roles, unnest(permissions) p)
WHERE kind = 'secret';

ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_hash_or_legacy CHECK (api_key_hash IS NOT NULL OR api_key IS NOT NULL),
    ADD CONSTRAINT api_keys_scopes_of_secret CHECK ((kind = 'secret') = (scopes IS NOT NULL));
