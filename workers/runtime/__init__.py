"""The generic worker runtimes: leased one-at-a-time loops and event consumer groups. No domain here."""
