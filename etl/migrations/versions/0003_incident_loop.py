"""The incident loop: workflow state on events, versioned history, road network, assignments.

* events: the parts of ``geo.workflow.EventState`` the table lacked (pause start, the status an
  extension returns to, the last dispatcher's level) and the extra allowance granted by
  approved extensions, so a transition reads one row and never replays history;
* event_history: the row's version (unique per event: two writers can never both record
  version N), the actor's role and the satisfaction of an evaluation, so the stored history
  replays exactly through ``geo.workflow.replay``;
* road_vertices / road_edges: the routable network built from ``roads`` (lines split where OSM
  ways share a node), cost in seconds for pgRouting;
* dispatch_assignments: which responder went to which event, with the ETA at dispatch.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _geom(kind: str) -> Geometry:
    return Geometry(geometry_type=kind, srid=4490, spatial_index=False)


def upgrade() -> None:
    op.add_column("events", sa.Column("paused_since", sa.DateTime(timezone=True)))
    op.add_column("events", sa.Column("resume_status", sa.String(24)))
    op.add_column("events", sa.Column("dispatched_by", sa.String(32)))
    op.add_column(
        "events", sa.Column("extension", sa.Numeric(8, 2), nullable=False, server_default="0")
    )
    op.create_index("ix_events_duplicate_of", "events", ["duplicate_of"])
    op.add_column("event_history", sa.Column("version", sa.Integer()))
    op.add_column("event_history", sa.Column("actor_role", sa.String(24)))
    op.add_column("event_history", sa.Column("satisfaction", sa.SmallInteger()))
    op.create_index(
        "ux_event_history_version", "event_history", ["event_id", "version"], unique=True
    )
    op.create_table(
        "road_vertices",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("geom", _geom("POINT"), nullable=False),
    )
    op.create_index("ix_road_vertices_geom", "road_vertices", ["geom"], postgresql_using="gist")
    op.create_table(
        "road_edges",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("road_id", sa.Integer(), sa.ForeignKey("roads.id", ondelete="CASCADE")),
        sa.Column("source", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("length_m", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False, comment="seconds"),
        sa.Column("reverse_cost", sa.Float(), nullable=False, comment="seconds"),
        sa.Column("geom", _geom("LINESTRING"), nullable=False),
    )
    op.create_index("ix_road_edges_source", "road_edges", ["source"])
    op.create_index("ix_road_edges_target", "road_edges", ["target"])
    op.create_table(
        "dispatch_assignments",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "event_id",
            sa.BigInteger(),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "responder_id",
            sa.Integer(),
            sa.ForeignKey("responders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("eta_s", sa.Float()),
        sa.Column("distance_m", sa.Float()),
        sa.Column("method", sa.String(16), nullable=False, comment="network | straight_line"),
        sa.Column("released_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_dispatch_assignments_event", "dispatch_assignments", ["event_id"])
    # at most one open assignment per responder: a second dispatch of a busy unit fails
    op.create_index(
        "ux_dispatch_assignments_open",
        "dispatch_assignments",
        ["responder_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("dispatch_assignments")
    op.drop_table("road_edges")
    op.drop_table("road_vertices")
    op.drop_index("ux_event_history_version", table_name="event_history")
    for col in ("satisfaction", "actor_role", "version"):
        op.drop_column("event_history", col)
    op.drop_index("ix_events_duplicate_of", table_name="events")
    for col in ("extension", "dispatched_by", "resume_status", "paused_since"):
        op.drop_column("events", col)
