"""ReplyHQ server: REST + Socket.IO on Sanic, Postgres as source of truth."""
