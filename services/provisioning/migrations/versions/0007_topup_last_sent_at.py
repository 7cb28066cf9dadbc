"""top-ups remember when they were last sent to the carrier

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 13:00:00.000000

A top-up the carrier's order list does not show yet may still be placed: its key is
sent again only once its last send can no longer land (CARRIER_IN_FLIGHT_S). Unsettled
rows from before take their last change as their last send: the safe side.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("topups") as batch:
        batch.add_column(sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE topups SET last_sent_at = updated_at WHERE status IN ('NEW', 'RETRYING', 'UNKNOWN')"
    )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("topups") as batch:
        batch.drop_column("last_sent_at")
