"""Registered runs: each run's number in its team, written by the server only.

Revision ID: 0002_registered_runs
Revises: 0001_run_counters
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa

revision = "0002_registered_runs"
down_revision = "0001_run_counters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lab_runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_lab_runs")),
        sa.UniqueConstraint("team", "number", name=op.f("uq_lab_runs_team")),
    )


def downgrade() -> None:
    op.drop_table("lab_runs")
