"""What every capability runs on: Postgres, Redis, metrics, logging, rate-limit counters. No domain here."""
