"""End users: SDK identity (API key + user), identify and profile, the admin's user lists."""
