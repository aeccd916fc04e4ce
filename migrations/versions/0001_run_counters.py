"""Per-team run counters.

Revision ID: 0001_run_counters
Revises:
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa

revision = "0001_run_counters"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lab_run_counters",
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team", name=op.f("pk_lab_run_counters")),
    )


def downgrade() -> None:
    op.drop_table("lab_run_counters")
