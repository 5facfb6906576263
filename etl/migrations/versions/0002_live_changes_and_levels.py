"""Live change cursor on events, and the default levels of the net.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = [
    ("county", "县（市、区）", "County", 0),
    ("township", "乡镇（街道）", "Township / street", 1),
    ("work_area", "工作片", "Work area", 2),
    ("community", "村（社区）", "Village / community", 3),
    ("grid", "网格", "Grid", 4),
    ("microgrid", "微网格", "Micro-grid", 5),
]


def upgrade() -> None:
    # Every change to an event takes a new rev, so the dashboard can ask "anything after rev N?"
    # with one index probe instead of re-querying everything. Inserts take rev from the column
    # default; updates from this row trigger. One NOTIFY per statement (not per row) keeps bulk
    # loads cheap.
    op.execute(
        """
        CREATE FUNCTION events_stamp_rev() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.rev := nextval('event_rev_seq');
          NEW.updated_at := clock_timestamp();
          RETURN NEW;
        END $$;
        CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('events_changed', TG_OP);
          RETURN NULL;
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER events_stamp_rev BEFORE UPDATE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_stamp_rev()"
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT OR UPDATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_notify()"
    )
    values = ", ".join(f"('{k}', '{n}', '{e}', {r})" for k, n, e, r in LEVELS)
    op.execute(f"INSERT INTO levels (key, name, name_en, rank) VALUES {values}")


def downgrade() -> None:
    op.execute("DELETE FROM levels WHERE key IN ('" + "','".join(k for k, *_ in LEVELS) + "')")
    op.execute("DROP TRIGGER events_notify ON events")
    op.execute("DROP TRIGGER events_stamp_rev ON events")
    op.execute("DROP FUNCTION events_notify()")
    op.execute("DROP FUNCTION events_stamp_rev()")
