"""Adapters: the ports made real (urllib3, trio, resolvers, token stores, SQLite and PostgreSQL outboxes)."""
