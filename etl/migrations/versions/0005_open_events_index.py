"""A partial index on open events: the command centre asks for "still open" across the whole
territory on every first render; with it the planner can BitmapOr this and the reported_at index
instead of scanning every event of the year.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_events_open ON events (reported_at) "
        "WHERE status NOT IN ('cancelled', 'closed', 'evaluated')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_open")
