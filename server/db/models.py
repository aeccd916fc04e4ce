"""The lab's own tables. They live beside MLflow's, prefixed `lab_`, with their own Alembic chain."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# explicit constraint names keep migrations identical on SQLite and PostgreSQL (and batch mode able to find them)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SqlRunCounter(Base):
    """The last run number handed out per team; incremented atomically, never reused."""

    __tablename__ = "lab_run_counters"

    team: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SqlRegisteredRun(Base):
    """Each run's number in its team, given once by the server: the only place a run number comes from."""

    __tablename__ = "lab_runs"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    registered_at_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (UniqueConstraint("team", "number"),)
