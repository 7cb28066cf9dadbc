"""Stripe: its event ids, the customer's next step, lookups by PaymentIntent id; the
in-process simulator's tables go (the simulator is a process of its own now)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 10:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_action", sa.JSON(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_payments_provider_reference"), ["provider_reference"], unique=False
        )
    op.execute("DROP TABLE IF EXISTS simulated_provider_refunds")
    op.execute("DROP TABLE IF EXISTS simulated_provider_charges")


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_provider_reference"))
        batch_op.drop_column("next_action")
    op.drop_table("stripe_events")
