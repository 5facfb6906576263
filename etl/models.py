"""The governance data model. Tables are created by Alembic migrations only.

Storage CRS is CGCS2000 geographic (EPSG:4490); see README "Why EPSG:4490".
Every jurisdictional row carries ``unit_path``: the codes of its units from the county down to
the finest one, so row-level security can later be keyed on a user's unit code
(``:code = ANY(unit_path)``) and every query can be scoped the same way today.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from geoalchemy2 import Geometry
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SRID = 4490
CodePath = ARRAY(String(32))


class Base(DeclarativeBase):
    pass


def _geom(kind: str) -> Geometry:
    # spatial_index=False: migrations create every GiST index explicitly by name
    return Geometry(geometry_type=kind, srid=SRID, spatial_index=False)


class Level(Base):
    """A level of the governance net. Depth is data: a four-level place defines its own."""

    __tablename__ = "levels"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(SmallInteger, comment="0 = top; only used for ordering")


class Unit(Base):
    """One governance unit at any level: county, township, community, grid, micro-grid, …"""

    __tablename__ = "units"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    level: Mapped[str] = mapped_column(ForeignKey("levels.key"))
    kind: Mapped[str] = mapped_column(String(16), default="urban")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    parent_code: Mapped[str | None] = mapped_column(String(32))
    depth: Mapped[int] = mapped_column(SmallInteger, default=0)
    unit_path: Mapped[list[str]] = mapped_column(CodePath)
    geom = mapped_column(_geom("MULTIPOLYGON"), nullable=False)
    valid_from: Mapped[date] = mapped_column(Date, server_default=func.current_date())
    valid_to: Mapped[date | None] = mapped_column(Date)
    households: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    residents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    buildings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parent: Mapped[Unit | None] = relationship(remote_side=[id])

    __table_args__ = (
        Index(
            "ix_units_code_current", "code", unique=True, postgresql_where=text("valid_to IS NULL")
        ),
        Index("ix_units_parent", "parent_id"),
        Index("ix_units_level", "level"),
        Index("ix_units_path", "unit_path", postgresql_using="gin"),
        Index("ix_units_geom", "geom", postgresql_using="gist"),
    )


class Building(Base):
    __tablename__ = "buildings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str | None] = mapped_column(String(256))
    floors: Mapped[int | None] = mapped_column(SmallInteger)
    households: Mapped[int] = mapped_column(Integer, default=0)
    residents: Mapped[int] = mapped_column(Integer, default=0)
    geom = mapped_column(_geom("MULTIPOLYGON"), nullable=False)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    unit_path: Mapped[list[str] | None] = mapped_column(CodePath)

    __table_args__ = (
        Index("ix_buildings_geom", "geom", postgresql_using="gist"),
        Index("ix_buildings_unit", "unit_id"),
        Index("ix_buildings_path", "unit_path", postgresql_using="gin"),
    )


class EventCategory(Base):
    __tablename__ = "event_categories"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str | None] = mapped_column(String(64))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("event_categories.code"))
    default_priority: Mapped[int] = mapped_column(SmallInteger, default=3)
    time_limit: Mapped[Decimal | None] = mapped_column(Numeric(8, 2))
    time_unit: Mapped[str | None] = mapped_column(String(16), comment="work_hours | work_days")
    department: Mapped[str | None] = mapped_column(String(64))
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    geom = mapped_column(_geom("POINT"), nullable=False)
    category_code: Mapped[str] = mapped_column(ForeignKey("event_categories.code"))
    priority: Mapped[int] = mapped_column(SmallInteger, default=3)
    channel: Mapped[str] = mapped_column(String(24))
    description: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(24), default="reported")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    unit_path: Mapped[list[str] | None] = mapped_column(CodePath)
    handling_level: Mapped[str] = mapped_column(String(32), default="grid")
    handling_unit_code: Mapped[str | None] = mapped_column(String(32))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"))
    responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # change cursor: a trigger stamps every insert/update from a sequence (see migration)
    rev: Mapped[int] = mapped_column(BigInteger, server_default=text("nextval('event_rev_seq')"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # workflow state (migration 0003): see geo.workflow.EventState
    paused_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resume_status: Mapped[str | None] = mapped_column(String(24))
    dispatched_by: Mapped[str | None] = mapped_column(String(32))
    extension: Mapped[Decimal] = mapped_column(Numeric(8, 2), default=0, server_default="0")

    __table_args__ = (
        Index("ix_events_geom", "geom", postgresql_using="gist"),
        Index("ix_events_reported_at", "reported_at"),
        Index("ix_events_path", "unit_path", postgresql_using="gin"),
        Index("ix_events_rev", "rev"),
        Index(
            "ix_events_duplicate_of",
            "duplicate_of",
            postgresql_where=text("duplicate_of IS NOT NULL"),
        ),
        Index(
            "ix_events_responder",
            "responder_id",
            postgresql_where=text("responder_id IS NOT NULL"),
        ),
        Index("ix_events_closed", "closed_at", postgresql_where=text("closed_at IS NOT NULL")),
        Index(
            "ix_events_open",
            "reported_at",
            postgresql_where=text("status NOT IN ('cancelled', 'closed', 'evaluated')"),
        ),
    )


class EventHistory(Base):
    __tablename__ = "event_history"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    actor_level: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    from_level: Mapped[str | None] = mapped_column(String(32))
    to_level: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    # migration 0003: the row's workflow version (unique per event), role, evaluation
    version: Mapped[int | None] = mapped_column(Integer)
    actor_role: Mapped[str | None] = mapped_column(String(24))
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)

    __table_args__ = (Index("ix_event_history_event", "event_id", "at"),)


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(
        String(24), comment="grid_chief|full_time|part_time|auxiliary"
    )
    phone: Mapped[str | None] = mapped_column(String(32))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    unit_code: Mapped[str] = mapped_column(String(32))
    unit_path: Mapped[list[str] | None] = mapped_column(CodePath)

    __table_args__ = (
        Index("ix_staff_unit", "unit_id"),
        Index("ix_staff_path", "unit_path", postgresql_using="gin"),
    )


class Responder(Base):
    __tablename__ = "responders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16), comment="police|fire|medical|power|grid_team")
    status: Mapped[str] = mapped_column(String(16), default="available")
    geom = mapped_column(_geom("POINT"))
    position_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unit_path: Mapped[list[str] | None] = mapped_column(CodePath)

    __table_args__ = (
        Index("ix_responders_geom", "geom", postgresql_using="gist"),
        Index("ix_responders_path", "unit_path", postgresql_using="gin"),
    )


class ResponderPosition(Base):
    """The AVL track of a responder."""

    __tablename__ = "responder_positions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    geom = mapped_column(_geom("POINT"), nullable=False)

    __table_args__ = (
        Index("ix_responder_positions_resp", "responder_id", "at"),
        Index("ix_responder_positions_geom", "geom", postgresql_using="gist"),
    )


class Patrol(Base):
    """A patrol or visit check-in by a staff member."""

    __tablename__ = "patrols"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_code: Mapped[str] = mapped_column(String(32))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), default="patrol", comment="patrol|visit")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    geom = mapped_column(_geom("POINT"), nullable=False)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    unit_path: Mapped[list[str] | None] = mapped_column(CodePath)

    __table_args__ = (
        Index("uq_patrols_staff_at", "staff_code", "at", "kind", unique=True),
        Index("ix_patrols_at", "at"),
        Index("ix_patrols_unit", "unit_id", "at"),
        Index("ix_patrols_geom", "geom", postgresql_using="gist"),
        Index("ix_patrols_path", "unit_path", postgresql_using="gin"),
    )


class Road(Base):
    __tablename__ = "roads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(128))
    road_class: Mapped[str] = mapped_column(String(24))
    speed_kmh: Mapped[float] = mapped_column(Numeric(5, 1))
    geom = mapped_column(_geom("LINESTRING"), nullable=False)

    __table_args__ = (Index("ix_roads_geom", "geom", postgresql_using="gist"),)


class EtlRun(Base):
    __tablename__ = "etl_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Numeric(10, 3))
    loaded: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="running")
    message: Mapped[str | None] = mapped_column(Text)


# --- migration 0003: the incident loop -------------------------------------------------------


class RoadVertex(Base):
    """A node of the routable network (a road end or a node shared by two OSM ways)."""

    __tablename__ = "road_vertices"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    geom = mapped_column(_geom("POINT"), nullable=False)

    __table_args__ = (Index("ix_road_vertices_geom", "geom", postgresql_using="gist"),)


class RoadEdge(Base):
    """A road piece between two vertices; ``cost``/``reverse_cost`` in seconds (pgRouting)."""

    __tablename__ = "road_edges"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    road_id: Mapped[int | None] = mapped_column(ForeignKey("roads.id", ondelete="CASCADE"))
    source: Mapped[int] = mapped_column(BigInteger)
    target: Mapped[int] = mapped_column(BigInteger)
    length_m: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    reverse_cost: Mapped[float] = mapped_column(Float)
    geom = mapped_column(_geom("LINESTRING"), nullable=False)

    __table_args__ = (
        Index("ix_road_edges_source", "source"),
        Index("ix_road_edges_target", "target"),
    )


class DispatchAssignment(Base):
    """A responder sent to an event; open while ``released_at`` is NULL (one per responder)."""

    __tablename__ = "dispatch_assignments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    eta_s: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16), comment="network | straight_line")
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_dispatch_assignments_event", "event_id"),
        Index(
            "ux_dispatch_assignments_open",
            "responder_id",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
    )


# --- migration 0004: grid plans ---------------------------------------------------------------


class GridPlan(Base):
    """A named version of the grids of one unit, proposed by the planner or edited by hand.

    ``draft`` until approved; approving makes its grids current (the old ones get ``valid_to``)
    and marks the unit's previously approved plan ``superseded``.
    """

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    unit_code: Mapped[str] = mapped_column(String(32))
    unit_path: Mapped[list[str]] = mapped_column(CodePath)
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    band_low: Mapped[int] = mapped_column(Integer)
    band_high: Mapped[int] = mapped_column(Integer)
    micro_low: Mapped[int | None] = mapped_column(Integer)
    micro_high: Mapped[int | None] = mapped_column(Integer)
    full_redraw: Mapped[bool] = mapped_column(Boolean, server_default="false")
    seed: Mapped[int | None] = mapped_column(Integer)
    locked: Mapped[list[str]] = mapped_column(CodePath, server_default="{}")
    metrics: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    effective_date: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        Index("ux_plans_unit_name", "unit_code", "name", unique=True),
        Index("ix_plans_path", "unit_path", postgresql_using="gin"),
    )


class PlanGrid(Base):
    """A grid or micro-grid of a plan (``level``), with its code, tallies and shape."""

    __tablename__ = "plan_grids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    parent_code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(64), comment="the solver's label")
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    residents: Mapped[int] = mapped_column(Integer, server_default="0")
    buildings: Mapped[int] = mapped_column(Integer, server_default="0")
    status: Mapped[str] = mapped_column(String(8), comment="under | in | over")
    polsby_popper: Mapped[float | None] = mapped_column(Float)
    kept: Mapped[bool] = mapped_column(Boolean, server_default="false")
    locked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    geom = mapped_column(_geom("MULTIPOLYGON"), nullable=False)

    __table_args__ = (
        Index("ux_plan_grids_code", "plan_id", "code", unique=True),
        Index("ix_plan_grids_geom", "geom", postgresql_using="gist"),
    )


class PlanAssignment(Base):
    """Building → grid (and micro-grid) code in a plan: the equivalency table."""

    __tablename__ = "plan_assignments"
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True
    )
    building_id: Mapped[int] = mapped_column(
        ForeignKey("buildings.id", ondelete="CASCADE"), primary_key=True
    )
    grid_code: Mapped[str] = mapped_column(String(32))
    microgrid_code: Mapped[str | None] = mapped_column(String(32))
    previous_code: Mapped[str | None] = mapped_column(
        String(32), comment="the building's grid when planned"
    )

    __table_args__ = (Index("ix_plan_assignments_grid", "plan_id", "grid_code"),)


# --- migration 0008: accounts, machine tokens, the audit log ----------------------------------


class User(Base):
    """A person who logs in, bound to one role and one unit (they see it and what lies below)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    unit_code: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(Text, comment="argon2id")
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default="false")
    failed_logins: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    session_epoch: Mapped[int] = mapped_column(
        Integer, server_default="1", comment="bumped to end every session of the user"
    )
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A machine client's bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12), comment="first characters, to recognise it")
    role: Mapped[str] = mapped_column(String(16))
    unit_code: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who saw unmasked personal data, exported, logged in or changed an account.

    Append-only for the app role (no UPDATE or DELETE grant); readable by admins only (policy).
    """

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    unit_code: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    ip: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_at", "at"),)
