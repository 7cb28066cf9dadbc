"""who set a line's auto-renewal last

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("auto_renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("auto_renewals", schema=None) as batch_op:
        batch_op.drop_column("updated_by")
