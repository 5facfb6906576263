"""Drop two event indexes no query uses; each cost ~0.4 s per million rows on a bulk load and
a write on every event insert or change.

``ix_events_status``: every status filter is either over open statuses, which
``ix_events_open`` (reported_at, partial on the open statuses) answers, or over a status most
events have (closed, evaluated), where a scan is the plan anyway.

``ix_events_unit``: places are filtered by ``unit_path`` (GIN), never by ``unit_id``, and units
are never deleted (they are retired with ``valid_to``), so the foreign key's ON DELETE SET NULL
has nothing to look up.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_events_status")
    op.execute("DROP INDEX IF EXISTS ix_events_unit")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_events_unit ON events (unit_id)")
    op.execute("CREATE INDEX ix_events_status ON events (status)")
