"""Database access for the lab's tables. Rows become plain values before they leave this module."""

from __future__ import annotations

import functools
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from labserver.db.models import SqlRegisteredRun, SqlRunCounter


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

    def register_run(self, run_id: str, team: str) -> int:
        """The run's number in its team: the next one the first time, the same one on every later call.

        The counter and the run's row change in one transaction, so a registration that fails leaves no gap,
        and two registrations of the same run at once (a retry racing its lost original) get one number."""
        for _ in range(3):
            try:
                with self.engine.begin() as connection:
                    known = self._number_of(connection, run_id)
                    if known is not None:
                        return known
                    number = self._next_number(connection, team)
                    connection.execute(
                        sa.insert(SqlRegisteredRun.__table__).values(
                            run_id=run_id, team=team, number=number, registered_at_ms=int(time.time() * 1000)
                        )
                    )
                    return number
            except sa.exc.IntegrityError:  # the same run registered by a concurrent call: read its number
                continue
        with self.engine.connect() as connection:
            return self._number_of(connection, run_id)

    def number_of(self, run_id: str) -> int | None:
        with self.engine.connect() as connection:
            return self._number_of(connection, run_id)

    def run_id_of(self, team: str, number: int) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(SqlRegisteredRun.run_id).where(
                    SqlRegisteredRun.team == team, SqlRegisteredRun.number == number
                )
            ).scalar_one_or_none()

    @staticmethod
    def _number_of(connection, run_id: str) -> int | None:
        value = connection.execute(
            sa.select(SqlRegisteredRun.number).where(SqlRegisteredRun.run_id == run_id)
        ).scalar_one_or_none()
        return int(value) if value is not None else None

    def _next_number(self, connection, team: str) -> int:
        """One atomic upsert of the team's counter, so concurrent callers never share a number."""
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
        return int(connection.execute(statement).scalar_one())

    def last_run_number(self, team: str) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(SqlRunCounter.last_number).where(SqlRunCounter.team == team)
            ).scalar_one_or_none()
        return int(value or 0)
