"""Postgres access: the pool, migrations, and the SQL of tables the platform core owns."""
