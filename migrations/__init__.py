"""Alembic migrations for the lab's own tables (version table: alembic_version_lab)."""
