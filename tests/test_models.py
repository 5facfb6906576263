"""Every table through the models, with a five-level and a four-level tree."""

from __future__ import annotations

from datetime import UTC, date, datetime

import shapely
from geoalchemy2.shape import from_shape, to_shape
from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from etl.models import (
    Building,
    EtlRun,
    Event,
    EventCategory,
    EventHistory,
    Patrol,
    Responder,
    ResponderPosition,
    Road,
    Staff,
    Unit,
)

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _square(x0: float, y0: float, size: float) -> shapely.MultiPolygon:
    return shapely.MultiPolygon([shapely.box(x0, y0, x0 + size, y0 + size)])


def _chain(session: Session, levels: list[str], codes: list[str]) -> list[Unit]:
    """A nested chain of units, each a smaller square inside its parent."""
    units: list[Unit] = []
    parent: Unit | None = None
    for depth, (level, code) in enumerate(zip(levels, codes, strict=True)):
        size = 1.0 / (2**depth)
        unit = Unit(
            code=code,
            name=f"{level} {code}",
            level=level,
            kind="urban",
            parent=parent,
            parent_code=parent.code if parent else None,
            depth=depth,
            unit_path=[u.code for u in units] + [code],
            geom=from_shape(_square(108.0, 32.0, size), srid=4490),
        )
        session.add(unit)
        units.append(unit)
        parent = unit
    session.flush()
    return units


def test_five_level_tree_round_trips(conn: Connection) -> None:
    session = Session(bind=conn)
    levels = ["county", "township", "community", "grid", "microgrid"]
    codes = ["511781", "511781001", "511781001001", "511781001001001", "511781001001001001"]
    chain = _chain(session, levels, codes)
    leaf = session.scalars(select(Unit).where(Unit.code == codes[-1])).one()
    ancestors = []
    node: Unit | None = leaf
    while node is not None:
        ancestors.append(node.level)
        node = node.parent
    assert ancestors[::-1] == levels
    assert leaf.unit_path == codes
    assert to_shape(leaf.geom).within(to_shape(chain[0].geom))


def test_four_level_tree_uses_its_own_levels(conn: Connection) -> None:
    session = Session(bind=conn)
    levels = ["township", "work_area", "community", "grid"]  # 蓬莱: 镇街 → 工作片 → 建制村 → 网格
    codes = ["370684100", "370684100A01", "370684100201", "370684100201001"]
    _chain(session, levels, codes)
    depth = session.scalar(select(func.max(Unit.depth)).where(Unit.code.in_(codes)))
    assert depth == 3
    rows = conn.execute(
        text("SELECT l.name FROM units u JOIN levels l ON l.key = u.level WHERE u.code = :c"),
        {"c": "370684100A01"},
    ).scalar_one()
    assert rows == "工作片"


def test_every_table_inserts_and_queries(conn: Connection) -> None:
    session = Session(bind=conn)
    grid = _chain(
        session,
        ["county", "township", "community", "grid"],
        ["511781", "511781001", "511781001001", "511781001001001"],
    )[-1]
    pt = from_shape(shapely.Point(108.01, 32.01), srid=4490)
    session.add(
        EventCategory(
            code="T01", name="测试", default_priority=2, time_limit=4, time_unit="work_hours"
        )
    )
    session.add(
        Building(
            code="B1",
            address="测试路1号",
            floors=6,
            households=40,
            residents=100,
            geom=from_shape(
                shapely.MultiPolygon([shapely.box(108.01, 32.01, 108.011, 32.011)]), srid=4490
            ),
            unit_id=grid.id,
            unit_path=grid.unit_path,
        )
    )
    staff = Staff(
        code="S1",
        name="张三",
        role="grid_chief",
        unit_id=grid.id,
        unit_code=grid.code,
        unit_path=grid.unit_path,
    )
    responder = Responder(
        code="R1", name="消防一队", type="fire", status="available", geom=pt, position_at=NOW
    )
    session.add_all([staff, responder])
    session.flush()
    event = Event(
        code="EV1",
        geom=pt,
        category_code="T01",
        priority=2,
        channel="patrol",
        reported_at=NOW,
        unit_id=grid.id,
        unit_path=grid.unit_path,
        responder_id=responder.id,
    )
    session.add(event)
    session.flush()
    session.add_all(
        [
            EventHistory(
                event_id=event.id,
                at=NOW,
                actor="张三",
                actor_level="grid",
                action="report",
                to_status="reported",
            ),
            Patrol(
                staff_code="S1",
                staff_id=staff.id,
                kind="patrol",
                at=NOW,
                geom=pt,
                unit_id=grid.id,
                unit_path=grid.unit_path,
            ),
            ResponderPosition(responder_id=responder.id, at=NOW, geom=pt),
            Road(
                code="R-1",
                name="测试路",
                road_class="residential",
                speed_kmh=30,
                geom=from_shape(shapely.LineString([(108.0, 32.0), (108.02, 32.02)]), srid=4490),
            ),
            EtlRun(kind="events", path="x.csv", sha256="0" * 64, loaded=1),
        ]
    )
    session.flush()
    for model in (
        EventCategory,
        Building,
        Staff,
        Responder,
        Event,
        EventHistory,
        Patrol,
        ResponderPosition,
        Road,
        EtlRun,
    ):
        assert session.scalar(select(func.count()).select_from(model)) >= 1, model.__tablename__
    # the spatial index answers a bounding-box query for the event
    hits = (
        conn.execute(
            text(
                "SELECT code FROM events WHERE geom && ST_MakeEnvelope(108, 32, 108.02, 32.02, 4490)"
            )
        )
        .scalars()
        .all()
    )
    assert hits == ["EV1"]
    # scoping by a unit code: the event carries every level's code
    scoped = conn.execute(
        text("SELECT count(*) FROM events WHERE unit_path @> ARRAY['511781001']::varchar[]")
    ).scalar()
    assert scoped == 1


def test_event_changes_move_the_cursor(conn: Connection) -> None:
    session = Session(bind=conn)
    grid = _chain(session, ["county"], ["511781"])[-1]
    session.add(EventCategory(code="T02", name="测试2", default_priority=3))
    session.flush()
    event = Event(
        code="EV2",
        geom=from_shape(shapely.Point(108.01, 32.01), srid=4490),
        category_code="T02",
        channel="app",
        reported_at=NOW,
        unit_id=grid.id,
    )
    session.add(event)
    session.flush()
    first = conn.execute(text("SELECT rev FROM events WHERE code = 'EV2'")).scalar_one()
    conn.execute(text("UPDATE events SET status = 'filed' WHERE code = 'EV2'"))
    second = conn.execute(text("SELECT rev FROM events WHERE code = 'EV2'")).scalar_one()
    assert second > first


def test_current_codes_are_unique_but_history_is_kept(conn: Connection) -> None:
    session = Session(bind=conn)
    old = _chain(session, ["county"], ["511781"])[0]
    old.valid_to = date(2026, 1, 1)
    session.flush()
    session.add(
        Unit(
            code="511781",
            name="新",
            level="county",
            kind="urban",
            depth=0,
            unit_path=["511781"],
            geom=from_shape(_square(108.0, 32.0, 1.0), srid=4490),
            valid_from=date(2026, 1, 1),
        )
    )
    session.flush()
    n = session.scalar(select(func.count()).select_from(Unit).where(Unit.code == "511781"))
    assert n == 2
