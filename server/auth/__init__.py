"""Admin authentication: access tokens (JWT) and who the caller is."""
