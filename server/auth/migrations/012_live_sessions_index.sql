-- Whether a sign-in is live (server/auth/admins.py, _SESSION_LIVE) is asked on every admin
-- request and socket event, and of every /admin socket each ADMIN_SOCKET_RECHECK_INTERVAL. A
-- family gains a revoked token every refresh (a month of 15-minute tokens is ~2,900 rows), and
-- the family index made that EXISTS walk them all; this one holds only the live token.
CREATE INDEX admin_refresh_tokens_live_family_idx ON admin_refresh_tokens (family_id, admin_id)
    WHERE revoked_at IS NULL;
