"""Database access for the lab's tables. Rows become plain values before they leave this module."""

from __future__ import annotations

import functools
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from labserver.db.models import SqlRunCounter


@functools.lru_cache(maxsize=8)
def engine_for(db_uri: str) -> sa.Engine:
    if db_uri.startswith("sqlite"):
        # concurrent writers wait for the lock instead of failing with "database is locked"
        return sa.create_engine(db_uri, connect_args={"timeout": 60})
    return sa.create_engine(db_uri, pool_pre_ping=True)


class LabStore:
    def __init__(self, db_uri: str):
        self.db_uri = db_uri
        self.engine = engine_for(db_uri)

    def allocate_run_number(self, team: str) -> int:
        """The next number for `team`: one atomic upsert, so concurrent callers never share a number."""
        insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
        table = SqlRunCounter.__table__
        now = int(time.time() * 1000)
        statement = (
            insert(table)
            .values(team=team, last_number=1, updated_at_ms=now)
            .on_conflict_do_update(
                index_elements=[table.c.team],
                set_={"last_number": table.c.last_number + 1, "updated_at_ms": now},
            )
            .returning(table.c.last_number)
        )
        with self.engine.begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def last_run_number(self, team: str) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(SqlRunCounter.last_number).where(SqlRunCounter.team == team)
            ).scalar_one_or_none()
        return int(value or 0)
