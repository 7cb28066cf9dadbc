"""the carrier is a process of its own: drop the in-process simulator's ledger

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00.000000

The in-process simulator created `simulated_carrier_topups` itself (outside the
migrations), so the table exists only where it ran: dropped if there. The carrier
simulator (services/carrier_simulator/) keeps its ledger in its own database.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("DROP TABLE IF EXISTS simulated_carrier_topups")


def downgrade() -> None:
    """Downgrade schema: nothing to restore (the table was never the service's)."""
