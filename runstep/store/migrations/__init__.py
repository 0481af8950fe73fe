"""Alembic migrations of the Runstep schema."""
