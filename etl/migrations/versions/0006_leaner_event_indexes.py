"""Event indexes that earn their keep: each one is rebuilt on a bulk load and maintained on
every write, so each must serve a query.

``ix_events_category`` served no query (category filters always come with a time window or a
place, which the reported_at, GiST and path indexes answer) and cost ~0.8 s per million rows on
a bulk load. ``ix_events_duplicate_of`` is kept for the foreign key's ON DELETE SET NULL, but
only over the few events that are duplicates: a strict ``duplicate_of = $1`` implies the
predicate, so PostgreSQL still uses it.

Two small partial indexes serve the command centre: ``ix_events_responder`` finds the open
event a responder is dispatched to (without it, one scan of every open event per responder:
45 s at province scale), and ``ix_events_closed`` finds events closed after a moment, so
"open at the end of the previous period" reads the open events plus those closed since,
instead of every event of the year.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_events_category")
    op.execute("DROP INDEX IF EXISTS ix_events_duplicate_of")
    op.execute(
        "CREATE INDEX ix_events_duplicate_of ON events (duplicate_of) WHERE duplicate_of IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_events_responder ON events (responder_id) WHERE responder_id IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_events_closed ON events (closed_at) WHERE closed_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_closed")
    op.execute("DROP INDEX ix_events_responder")
    op.execute("DROP INDEX ix_events_duplicate_of")
    op.execute("CREATE INDEX ix_events_duplicate_of ON events (duplicate_of)")
    op.execute("CREATE INDEX ix_events_category ON events (category_code)")
