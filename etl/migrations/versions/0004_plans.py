"""Grid plans: named versions of a redraw, their grids and their building assignments.

* plans: one row per saved plan of one unit (community, township or county): band, seed,
  options, status (draft → approved; an approved plan replaced by a later one is superseded),
  who saved/approved it, the effective date and the solver's metrics;
* plan_grids: the grids and micro-grids of a plan, with codes, tallies, band status and shape;
* plan_assignments: building → grid code and micro-grid code (the equivalency table).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("unit_path", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="draft"),
        sa.Column("band_low", sa.Integer(), nullable=False),
        sa.Column("band_high", sa.Integer(), nullable=False),
        sa.Column("micro_low", sa.Integer()),
        sa.Column("micro_high", sa.Integer()),
        sa.Column("full_redraw", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("seed", sa.Integer()),
        sa.Column("locked", postgresql.ARRAY(sa.String(32)), nullable=False, server_default="{}"),
        sa.Column("metrics", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("note", sa.Text()),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("approved_by", sa.String(64)),
        sa.Column("approved_at", sa.DateTime(timezone=True)),
        sa.Column("effective_date", sa.Date()),
        sa.CheckConstraint("status IN ('draft', 'approved', 'superseded')", name="ck_plans_status"),
    )
    op.create_index("ux_plans_unit_name", "plans", ["unit_code", "name"], unique=True)
    op.create_index("ix_plans_path", "plans", ["unit_path"], postgresql_using="gin")
    op.create_table(
        "plan_grids",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "plan_id", sa.Integer(), sa.ForeignKey("plans.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("parent_code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("label", sa.String(64), nullable=False, comment="the solver's label"),
        sa.Column("households", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("residents", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("buildings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(8), nullable=False, comment="under | in | over"),
        sa.Column("polsby_popper", sa.Float()),
        sa.Column("kept", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("locked", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4490, spatial_index=False), nullable=False),
    )
    op.create_index("ux_plan_grids_code", "plan_grids", ["plan_id", "code"], unique=True)
    op.create_index("ix_plan_grids_geom", "plan_grids", ["geom"], postgresql_using="gist")
    op.create_table(
        "plan_assignments",
        sa.Column(
            "plan_id", sa.Integer(), sa.ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "building_id",
            sa.Integer(),
            sa.ForeignKey("buildings.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("grid_code", sa.String(32), nullable=False),
        sa.Column("microgrid_code", sa.String(32)),
        sa.Column("previous_code", sa.String(32), comment="the building's grid when planned"),
    )
    op.create_index("ix_plan_assignments_grid", "plan_assignments", ["plan_id", "grid_code"])


def downgrade() -> None:
    op.drop_table("plan_assignments")
    op.drop_table("plan_grids")
    op.drop_table("plans")
