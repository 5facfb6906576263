"""A small hand-made territory for the command-centre tests, written through the models.

County 999999 is a 0.4 x 0.3 degree box cut into 2 townships x 2 communities x 2 grids; events,
patrols, responders and buildings are drawn from a seeded generator so every figure the screen
shows can be recounted independently by the tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, Point, Polygon, box
from sqlalchemy import Connection, text

from etl.demo import load_categories, read_categories
from etl.models import Building, Event, Patrol, Responder, Unit

COUNTY = "999999"
STATUSES = ("reported", "dispatched", "in_progress", "handled", "closed", "evaluated", "cancelled")
CATS = ("0101", "0201", "0301", "0501", "0601")


BOXES: dict[str, tuple[float, float, float, float]] = {}
"""Unit code -> (west, south, east, north) of the hand-made territory (units are boxes)."""


def _unit(code: str, name: str, level: str, parent: Unit | None, geom: Polygon, hh: int) -> Unit:
    path = [*(parent.unit_path if parent else []), code]
    BOXES[code] = geom.bounds
    return Unit(code=code, name=name, level=level, kind="urban", parent=parent,
                parent_code=parent.code if parent else None, depth=len(path) - 1, unit_path=path,
                geom=from_shape(MultiPolygon([geom]), srid=4490), households=hh)  # fmt: skip


def build_units(conn: Connection) -> dict[str, Unit]:
    """County -> 2 townships -> 2 communities each -> 2 grids each; grid households vary by band."""
    from sqlalchemy.orm import Session

    session = Session(bind=conn)
    county = _unit(COUNTY, "测试县", "county", None, box(108.0, 32.0, 108.4, 32.3), 0)
    units = {COUNTY: county}
    grid_hh = iter([250, 320, 410, 480, 520, 610, 360, 290])
    for t in range(2):
        tb = box(108.0 + 0.2 * t, 32.0, 108.2 + 0.2 * t, 32.3)
        town = _unit(f"{COUNTY}{t + 1:03d}", f"镇{t + 1}", "township", county, tb, 0)
        units[town.code] = town
        for c in range(2):
            cb = box(tb.bounds[0], 32.0 + 0.15 * c, tb.bounds[2], 32.15 + 0.15 * c)
            comm = _unit(
                f"{town.code}{c + 1:03d}", f"社区{t + 1}-{c + 1}", "community", town, cb, 0
            )
            units[comm.code] = comm
            for g in range(2):
                x0 = cb.bounds[0] + 0.1 * g
                gb = box(x0, cb.bounds[1], x0 + 0.1, cb.bounds[3])
                grid = _unit(f"{comm.code}{g + 1:03d}", f"网格{t + 1}-{c + 1}-{g + 1}", "grid", comm,
                             gb, next(grid_hh))  # fmt: skip
                units[grid.code] = grid
    session.add_all(units.values())
    session.flush()
    return units


def _grids(units: dict[str, Unit]) -> list[Unit]:
    return [u for u in units.values() if u.level == "grid"]


def build_events(
    conn: Connection,
    units: dict[str, Unit],
    *,
    now: datetime,
    n: int,
    rng: np.random.Generator,
    responder_ids: list[int],
) -> None:
    """``n`` events over the last 10 days, with every status and some overdue."""
    from sqlalchemy.orm import Session

    session = Session(bind=conn)
    grids = _grids(units)
    for i in range(n):
        grid = grids[int(rng.integers(len(grids)))]
        x0, y0, x1, y1 = BOXES[grid.code]
        at = now - timedelta(minutes=float(rng.uniform(1, 10 * 24 * 60)))
        status = STATUSES[int(rng.integers(len(STATUSES)))]
        dispatched = (
            at + timedelta(minutes=float(rng.uniform(5, 120))) if status != "reported" else None
        )
        closed = (
            dispatched + timedelta(hours=float(rng.uniform(1, 72)))
            if status in ("closed", "evaluated") and dispatched
            else None
        )
        if closed and closed > now:
            closed = now - timedelta(minutes=1)
        level = ("grid", "community", "township", "county")[int(rng.integers(4))]
        session.add(Event(
            code=f"T{i:05d}", geom=from_shape(Point(rng.uniform(x0, x1), rng.uniform(y0, y1)), srid=4490),
            category_code=CATS[int(rng.integers(len(CATS)))], priority=int(rng.integers(1, 5)),
            channel="patrol", reported_at=at, status=status, unit_id=grid.id, unit_path=grid.unit_path,
            handling_level=level, handling_unit_code=grid.unit_path[min(3, ["county", "township", "community", "grid"].index(level))],
            dispatched_at=dispatched, due_at=(dispatched + timedelta(hours=float(rng.uniform(2, 96)))) if dispatched else None,
            closed_at=closed, satisfaction=int(rng.integers(1, 6)) if status == "evaluated" else None,
            responder_id=responder_ids[i % len(responder_ids)] if status in ("dispatched", "in_progress") and i % 3 == 0 else None,
        ))  # fmt: skip
    session.flush()


def build_territory(
    conn: Connection, *, now: datetime, n_events: int = 120, seed: int = 3
) -> dict[str, Unit]:
    """Everything the screen reads, committed into ``conn``'s transaction."""
    from sqlalchemy.orm import Session

    rng = np.random.default_rng(seed)
    load_categories(conn, read_categories())
    units = build_units(conn)
    session = Session(bind=conn)
    resp = [Responder(code=f"R{i}", name=f"队{i}", type=t, status="busy" if i < 2 else "available",
                      geom=from_shape(Point(108.05 + 0.1 * i, 32.1), srid=4490), position_at=now,
                      unit_path=[COUNTY]) for i, t in enumerate(("police", "fire", "medical"))]  # fmt: skip
    session.add_all(resp)
    for j, grid in enumerate(_grids(units)):
        x0, y0, x1, y1 = BOXES[grid.code]
        session.add(Building(code=f"B{j}", households=grid.households // 4, residents=grid.households,
                             floors=6, unit_id=grid.id, unit_path=grid.unit_path,
                             geom=from_shape(MultiPolygon([box(x0 + 0.01, y0 + 0.01, x0 + 0.02, y0 + 0.02)]), srid=4490)))  # fmt: skip
        for day in range(j % 3 + 1):  # grid j patrolled on the last (j % 3 + 1) days
            session.add(Patrol(staff_code=f"S{j}", kind="patrol", at=now - timedelta(days=day, minutes=30),
                               geom=from_shape(Point((x0 + x1) / 2, (y0 + y1) / 2), srid=4490),
                               unit_id=grid.id, unit_path=grid.unit_path))  # fmt: skip
    session.flush()
    build_events(conn, units, now=now, n=n_events, rng=rng, responder_ids=[r.id for r in resp])
    return units


def test_territory_nests(conn: Connection) -> None:
    now = datetime.fromisoformat("2026-11-20T18:00:00+08:00")
    build_territory(conn, now=now, n_events=30)
    rows = conn.execute(text("SELECT level, count(*) FROM units WHERE unit_path[1] = :c GROUP BY level"),
                        {"c": COUNTY}).all()  # fmt: skip
    assert dict(rows) == {"county": 1, "township": 2, "community": 4, "grid": 8}
    outside = conn.execute(text("""SELECT count(*) FROM events e JOIN units u ON u.id = e.unit_id
                                   WHERE NOT ST_Covers(u.geom, e.geom)""")).scalar()  # fmt: skip
    assert outside == 0
