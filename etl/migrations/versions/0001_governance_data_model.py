"""governance data model

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:12:42.217401
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the change cursor of events: every insert/update takes the next value (trigger in 0002)
    op.execute("CREATE SEQUENCE event_rev_seq")
    op.create_table(
        "etl_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Numeric(precision=10, scale=3), nullable=True),
        sa.Column("loaded", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "event_categories",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=True),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.Column("default_priority", sa.SmallInteger(), nullable=False),
        sa.Column("time_limit", sa.Numeric(precision=8, scale=2), nullable=True),
        sa.Column(
            "time_unit", sa.String(length=16), nullable=True, comment="work_hours | work_days"
        ),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"],
            ["event_categories.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "levels",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column(
            "rank", sa.SmallInteger(), nullable=False, comment="0 = top; only used for ordering"
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "responders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "type",
            sa.String(length=16),
            nullable=False,
            comment="police|fire|medical|power|grid_team",
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.Column("position_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index(
        "ix_responders_geom", "responders", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_responders_path", "responders", ["unit_path"], unique=False, postgresql_using="gin"
    )
    op.create_table(
        "roads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("road_class", sa.String(length=24), nullable=False),
        sa.Column("speed_kmh", sa.Numeric(precision=5, scale=1), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="LINESTRING",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_roads_geom", "roads", ["geom"], unique=False, postgresql_using="gist")
    op.create_table(
        "responder_positions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("responder_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["responder_id"], ["responders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_responder_positions_geom",
        "responder_positions",
        ["geom"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_index(
        "ix_responder_positions_resp", "responder_positions", ["responder_id", "at"], unique=False
    )
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("level", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("parent_code", sa.String(length=32), nullable=True),
        sa.Column("depth", sa.SmallInteger(), nullable=False),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("valid_from", sa.Date(), server_default=sa.text("CURRENT_DATE"), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("residents", sa.Integer(), server_default="0", nullable=False),
        sa.Column("buildings", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["level"],
            ["levels.key"],
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["units.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_units_code_current",
        "units",
        ["code"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_index("ix_units_geom", "units", ["geom"], unique=False, postgresql_using="gist")
    op.create_index("ix_units_level", "units", ["level"], unique=False)
    op.create_index("ix_units_parent", "units", ["parent_id"], unique=False)
    op.create_index("ix_units_path", "units", ["unit_path"], unique=False, postgresql_using="gin")
    op.create_table(
        "buildings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=True),
        sa.Column("floors", sa.SmallInteger(), nullable=True),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("residents", sa.Integer(), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index(
        "ix_buildings_geom", "buildings", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_buildings_path", "buildings", ["unit_path"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_buildings_unit", "buildings", ["unit_id"], unique=False)
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("category_code", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=24), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=True),
        sa.Column("handling_level", sa.String(length=32), nullable=False),
        sa.Column("handling_unit_code", sa.String(length=32), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("satisfaction", sa.SmallInteger(), nullable=True),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
        sa.Column("responder_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "rev",
            sa.BigInteger(),
            server_default=sa.text("nextval('event_rev_seq')"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["event_categories.code"],
        ),
        sa.ForeignKeyConstraint(["duplicate_of"], ["events.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["responder_id"], ["responders.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_events_category", "events", ["category_code"], unique=False)
    op.create_index("ix_events_geom", "events", ["geom"], unique=False, postgresql_using="gist")
    op.create_index("ix_events_path", "events", ["unit_path"], unique=False, postgresql_using="gin")
    op.create_index("ix_events_reported_at", "events", ["reported_at"], unique=False)
    op.create_index("ix_events_rev", "events", ["rev"], unique=False)
    op.create_index("ix_events_status", "events", ["status"], unique=False)
    op.create_index("ix_events_unit", "events", ["unit_id"], unique=False)
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.String(length=24),
            nullable=False,
            comment="grid_chief|full_time|part_time|auxiliary",
        ),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_code", sa.String(length=32), nullable=False),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_staff_path", "staff", ["unit_path"], unique=False, postgresql_using="gin")
    op.create_index("ix_staff_unit", "staff", ["unit_id"], unique=False)
    op.create_table(
        "event_history",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_level", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=False),
        sa.Column("from_level", sa.String(length=32), nullable=True),
        sa.Column("to_level", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_event_history_event", "event_history", ["event_id", "at"], unique=False)
    op.create_table(
        "patrols",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("staff_code", sa.String(length=32), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="patrol|visit"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_path", sa.ARRAY(sa.String(length=32)), nullable=True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patrols_at", "patrols", ["at"], unique=False)
    op.create_index("ix_patrols_geom", "patrols", ["geom"], unique=False, postgresql_using="gist")
    op.create_index(
        "ix_patrols_path", "patrols", ["unit_path"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_patrols_unit", "patrols", ["unit_id", "at"], unique=False)
    op.create_index("uq_patrols_staff_at", "patrols", ["staff_code", "at", "kind"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_patrols_staff_at", table_name="patrols")
    op.drop_index("ix_patrols_unit", table_name="patrols")
    op.drop_index("ix_patrols_path", table_name="patrols", postgresql_using="gin")
    op.drop_index("ix_patrols_geom", table_name="patrols", postgresql_using="gist")
    op.drop_index("ix_patrols_at", table_name="patrols")
    op.drop_table("patrols")
    op.drop_index("ix_event_history_event", table_name="event_history")
    op.drop_table("event_history")
    op.drop_index("ix_staff_unit", table_name="staff")
    op.drop_index("ix_staff_path", table_name="staff", postgresql_using="gin")
    op.drop_table("staff")
    op.drop_index("ix_events_unit", table_name="events")
    op.drop_index("ix_events_status", table_name="events")
    op.drop_index("ix_events_rev", table_name="events")
    op.drop_index("ix_events_reported_at", table_name="events")
    op.drop_index("ix_events_path", table_name="events", postgresql_using="gin")
    op.drop_index("ix_events_geom", table_name="events", postgresql_using="gist")
    op.drop_index("ix_events_category", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_buildings_unit", table_name="buildings")
    op.drop_index("ix_buildings_path", table_name="buildings", postgresql_using="gin")
    op.drop_index("ix_buildings_geom", table_name="buildings", postgresql_using="gist")
    op.drop_table("buildings")
    op.drop_index("ix_units_path", table_name="units", postgresql_using="gin")
    op.drop_index("ix_units_parent", table_name="units")
    op.drop_index("ix_units_level", table_name="units")
    op.drop_index("ix_units_geom", table_name="units", postgresql_using="gist")
    op.drop_index(
        "ix_units_code_current", table_name="units", postgresql_where=sa.text("valid_to IS NULL")
    )
    op.drop_table("units")
    op.drop_index("ix_responder_positions_resp", table_name="responder_positions")
    op.drop_index(
        "ix_responder_positions_geom", table_name="responder_positions", postgresql_using="gist"
    )
    op.drop_table("responder_positions")
    op.drop_index("ix_roads_geom", table_name="roads", postgresql_using="gist")
    op.drop_table("roads")
    op.drop_index("ix_responders_path", table_name="responders", postgresql_using="gin")
    op.drop_index("ix_responders_geom", table_name="responders", postgresql_using="gist")
    op.drop_table("responders")
    op.drop_table("levels")
    op.drop_table("event_categories")
    op.drop_table("etl_runs")
    op.execute("DROP SEQUENCE event_rev_seq")
