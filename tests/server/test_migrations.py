"""The lab's Alembic chain upgrades and downgrades on SQLite and PostgreSQL, beside MLflow's schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from labserver.db import migrate
from labserver.store import engine_for


def _tables(uri: str) -> set[str]:
    return set(sa.inspect(engine_for(uri)).get_table_names())


def _mlflow_revision(uri: str) -> str:
    with engine_for(uri).connect() as connection:
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def _round_trip(uri: str) -> None:
    assert migrate.is_empty(uri)
    migrate.upgrade_all(uri, with_auth=True)
    tables = _tables(uri)
    assert {"experiments", "runs", "metrics"} <= tables  # MLflow's
    assert {"users", "alembic_version_auth"} <= tables  # basic-auth's
    assert {"lab_run_counters", "alembic_version_lab"} <= tables  # ours
    assert migrate.current_revision(uri) == migrate.head_revision()
    assert migrate.outdated_parts(uri) == []
    migrate.check_lab(uri)  # models and migrations agree (alembic check)
    mlflow_revision = _mlflow_revision(uri)

    migrate.downgrade_lab(uri, "base")
    assert not any(name.startswith("lab_") for name in _tables(uri))
    assert migrate.current_revision(uri) is None
    assert migrate.outdated_parts(uri) == ["lab"]
    assert _mlflow_revision(uri) == mlflow_revision  # MLflow's version table is never touched
    assert {"experiments", "users"} <= _tables(uri)

    migrate.upgrade_lab(uri)
    assert migrate.current_revision(uri) == migrate.head_revision()


def test_sqlite_round_trip(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'lab.db'}")


@pytest.mark.slow
def test_postgresql_round_trip(pg_uri):
    _round_trip(pg_uri)


def test_mlflow_refuses_a_database_where_lab_tables_came_first(tmp_path):
    """Why upgrade_all creates MLflow's schema first: MLflow's empty-database check sees our tables."""
    from mlflow.store.db.utils import _is_empty_database

    uri = f"sqlite:///{tmp_path / 'wrong-order.db'}"
    migrate.upgrade_lab(uri)
    assert not _is_empty_database(engine_for(uri))
