"""``territory_extent()``: the box of the current root units, readable whatever the caller's scope.

The API bounds reported coordinates by the territory. Under row-level security a township
user cannot see the county's row, so the plain query answered "no units" (and China's box was
cached for everyone). This function runs as its owner (who bypasses row-level security) and
returns only four numbers, no more than the map shows.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """CREATE OR REPLACE FUNCTION territory_extent() RETURNS box2d
           LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS
           $$ SELECT ST_Extent(geom) FROM units WHERE parent_id IS NULL AND valid_to IS NULL $$"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS territory_extent()")
