"""Alembic environment for the lab's tables only: MLflow's tables and version table are never touched.

labserver.db.migrate runs it and hands over the lab's table definitions (`target_metadata`, for `check` and
autogenerate), so this package never imports labserver: labserver depends on its migrations, not the reverse.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

VERSION_TABLE = "alembic_version_lab"
config = context.config


def include_name(name, type_, parent_names):
    # the lab shares its database with MLflow; only lab_* tables are ours to compare or change
    if type_ == "table":
        return name is not None and name.startswith("lab_")
    return True


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=config.attributes.get("target_metadata"),
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
