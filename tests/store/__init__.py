"""The durable store: one contract run against SQLite and Redis, registrations, live state."""
