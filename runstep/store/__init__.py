"""Persistence: SQLAlchemy Core tables, queries and Alembic migrations (the only SQL importer)."""
