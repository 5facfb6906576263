"""A small hand-made territory for the report tests, written through the models.

County 888888 (a 0.6 x 0.3 degree box): street 888888001 with two communities of three grids each
(one grid split into two micro-grids), and town 888888101 that runs a four-level ladder through a
work area (工作片) to one village of six grids. Staff, patrols, visits, events and their history
rows come from a seeded generator; events cluster in the town's north-east so Gi* has a hot spot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from etl.demo import load_categories, read_categories
from etl.models import Event, EventHistory, Patrol, Staff, Unit

TZ = ZoneInfo("Asia/Shanghai")
COUNTY = "888888"
ASOF = datetime(2026, 11, 5, 12, 0, tzinfo=TZ)
CATS = ("0101", "0201", "0301", "0402", "0501")
HOT_GRIDS = ("888888101001003", "888888101001006")  # north-east corner of the town


class Territory:
    def __init__(self) -> None:
        self.units: dict[str, Unit] = {}
        self.boxes: dict[str, tuple[float, float, float, float]] = {}

    def add(
        self, code: str, name: str, level: str, parent: str | None, b: tuple, hh: int = 0
    ) -> Unit:
        par = self.units.get(parent) if parent else None
        b = tuple(round(v, 6) for v in b)  # shared edges share exact vertices
        path = [*(par.unit_path if par else []), code]
        unit = Unit(code=code, name=name, level=level, kind="urban", parent=par, parent_code=parent,
                    depth=len(path) - 1, unit_path=path, households=hh, residents=hh * 2 + 7,
                    buildings=hh // 40 + 1, geom=from_shape(MultiPolygon([box(*b)]), srid=4490))  # fmt: skip
        self.units[code], self.boxes[code] = unit, b
        return unit

    def grids(self) -> list[Unit]:
        return [u for u in self.units.values() if u.level == "grid"]


def _units(t: Territory) -> None:
    hh = iter([250, 320, 410, 480, 520, 610, 360, 290, 450, 305, 700, 330])
    t.add(COUNTY, "测试市", "county", None, (108.0, 32.0, 108.6, 32.3))
    t.add("888888001", "城关街道", "township", COUNTY, (108.0, 32.0, 108.3, 32.3))
    for c in range(2):
        comm = f"888888001{c + 1:03d}"
        t.add(
            comm,
            f"东风社区{c + 1}",
            "community",
            "888888001",
            (108.0, 32.0 + 0.15 * c, 108.3, 32.15 + 0.15 * c),
        )
        for g in range(3):
            x0 = 108.0 + 0.1 * g
            t.add(f"{comm}{g + 1:03d}", f"东风{c + 1}-{g + 1}网格", "grid", comm,
                  (x0, 32.0 + 0.15 * c, x0 + 0.1, 32.15 + 0.15 * c), next(hh))  # fmt: skip
    first = "888888001001001"
    t.add(f"{first}01", "一号微网格", "microgrid", first, (108.0, 32.0, 108.05, 32.15), 120)
    t.add(f"{first}02", "二号微网格", "microgrid", first, (108.05, 32.0, 108.1, 32.15), 130)
    t.add("888888101", "青花镇", "township", COUNTY, (108.3, 32.0, 108.6, 32.3))
    t.add("888888101W1", "第一工作片", "work_area", "888888101", (108.3, 32.0, 108.6, 32.3))
    village = "888888101001"
    t.add(village, "青花村", "community", "888888101W1", (108.3, 32.0, 108.6, 32.3))
    for g in range(6):
        col, row = g % 3, g // 3
        x0, y0 = 108.3 + 0.1 * col, 32.0 + 0.15 * row
        t.add(f"{village}{g + 1:03d}", f"青花{g + 1}组网格", "grid", village, (x0, y0, x0 + 0.1, y0 + 0.15),
              next(hh))  # fmt: skip


def _staff(s: Session, t: Territory, rng: np.random.Generator) -> None:
    n = 0

    def add(role: str, unit: Unit) -> None:
        nonlocal n
        n += 1
        s.add(Staff(code=f"RS{n:04d}", name=f"员{n}", role=role, unit_id=unit.id, unit_code=unit.code,
                    unit_path=unit.unit_path))  # fmt: skip

    for i, grid in enumerate(t.grids()):
        add("grid_chief", grid)
        for _ in range(i % 3):  # some grids have no full-time worker at all
            add("full_time", grid)
        for _ in range(int(rng.integers(0, 4))):
            add("part_time", grid)
    for mg in (u for u in t.units.values() if u.level == "microgrid"):
        for _ in range(3):
            add("auxiliary", mg)
    add("full_time", t.units["888888001001"])  # a community-level worker: no grid's
    add("grid_chief", t.units["888888101W1"])


def _patrols(s: Session, t: Territory, rng: np.random.Generator) -> None:
    start = datetime(2026, 9, 25, tzinfo=TZ)
    places = [*t.grids(), *(u for u in t.units.values() if u.level in ("microgrid", "community"))]
    seen: set[tuple[str, datetime, str]] = set()
    for unit in places:
        x0, y0, x1, y1 = t.boxes[unit.code]
        for _ in range(int(rng.integers(5, 40))):
            at = start + timedelta(minutes=int(rng.integers(0, 45 * 24 * 60)))
            kind = "visit" if rng.random() < 0.3 else "patrol"
            staff = f"P{unit.code[-4:]}{int(rng.integers(3))}"
            if (staff, at, kind) in seen:
                continue
            seen.add((staff, at, kind))
            s.add(Patrol(staff_code=staff, kind=kind, at=at, unit_id=unit.id, unit_path=unit.unit_path,
                         geom=from_shape(Point((x0 + x1) / 2, (y0 + y1) / 2), srid=4490)))  # fmt: skip


def _events(s: Session, t: Territory, rng: np.random.Generator) -> None:
    grids = t.grids()
    weights = np.array([6.0 if g.code in HOT_GRIDS else 1.0 for g in grids])
    for i in range(320):
        grid = grids[int(rng.choice(len(grids), p=weights / weights.sum()))]
        unit = _maybe_micro(t, grid, rng)
        x0, y0, x1, y1 = t.boxes[unit.code]
        rep = datetime(2026, 9, 20, tzinfo=TZ) + timedelta(
            minutes=int(rng.integers(0, 46 * 24 * 60))
        )
        ev = _lifecycle(rep, rng)
        e = Event(code=f"RE{i:05d}", category_code=CATS[int(rng.integers(len(CATS)))], channel="patrol",
                  geom=from_shape(Point(rng.uniform(x0, x1), rng.uniform(y0, y1)), srid=4490),
                  reported_at=rep, unit_id=unit.id, unit_path=unit.unit_path, handling_level="grid",
                  **{k: v for k, v in ev.items() if k != "history"})  # fmt: skip
        s.add(e)
        s.flush()
        for at, action, frm, to, fl, tl in ev["history"]:
            s.add(EventHistory(event_id=e.id, at=at, actor="t", actor_level=fl, action=action,
                               from_status=frm, to_status=to, from_level=fl, to_level=tl))  # fmt: skip


def _maybe_micro(t: Territory, grid: Unit, rng: np.random.Generator) -> Unit:
    micro = [u for u in t.units.values() if u.parent_code == grid.code]
    return micro[int(rng.integers(len(micro)))] if micro and rng.random() < 0.6 else grid


def _lifecycle(rep: datetime, rng: np.random.Generator) -> dict:
    """Timestamps, status and history rows for one event; all before ASOF."""
    hist: list[tuple] = [(rep, "report", None, "reported", None, "grid")]
    out: dict = {"status": "reported", "history": hist}
    r = rng.random()
    if r < 0.08 or rep > ASOF - timedelta(hours=2):
        return out
    disp = rep + timedelta(minutes=float(rng.uniform(5, 600)))
    if r < 0.13:
        hist.append((rep + timedelta(minutes=3), "cancel", "reported", "cancelled", "grid", "grid"))
        return {**out, "status": "cancelled"}
    hist += [(disp - timedelta(minutes=2), "verify", "reported", "verified", "grid", "grid"),
             (disp - timedelta(minutes=1), "file", "verified", "filed", "grid", "grid"),
             (disp, "dispatch", "filed", "dispatched", "grid", "grid")]  # fmt: skip
    due = disp + timedelta(hours=float(rng.choice([8, 24, 72, 120])))
    out.update(status="dispatched", dispatched_at=disp, due_at=due)
    t = disp
    if rng.random() < 0.15:
        t += timedelta(hours=2)
        hist += [(t, "return", "dispatched", "filed", "grid", "community"),
                 (t + timedelta(minutes=30), "dispatch", "filed", "dispatched", "community", "grid")]  # fmt: skip
        t += timedelta(minutes=30)
    if rng.random() < 0.1:
        t += timedelta(hours=1)
        hist.append((t, "escalate", "dispatched", "filed", "grid", "community"))
    handled = t + timedelta(hours=float(rng.exponential(40)))
    if handled > ASOF or rng.random() < 0.1:
        return out
    hist += [(handled - timedelta(minutes=10), "handle", "dispatched", "in_progress", "grid", "grid"),
             (handled, "report_back", "in_progress", "handled", "grid", "grid")]  # fmt: skip
    out.update(status="handled", handled_at=handled)
    closed = handled + timedelta(hours=float(rng.uniform(0.5, 30)))
    if closed > ASOF:
        return out
    hist += [(closed - timedelta(minutes=5), "check_pass", "handled", "checked", "grid", "grid"),
             (closed, "close", "checked", "closed", "grid", "grid")]  # fmt: skip
    out.update(
        status="closed",
        closed_at=closed,
        satisfaction=int(rng.integers(1, 6)) if rng.random() < 0.7 else None,
    )
    return out


def build_report_territory(conn: Connection, *, seed: int = 5) -> Territory:
    """Everything a coverage report reads, inside ``conn``'s (rolled-back) transaction."""
    rng = np.random.default_rng(seed)
    load_categories(conn, read_categories())
    t = Territory()
    _units(t)
    s = Session(bind=conn)
    s.add_all(t.units.values())
    s.flush()
    _staff(s, t, rng)
    _patrols(s, t, rng)
    _events(s, t, rng)
    s.flush()
    return t


def test_territory_is_a_seamless_tree(conn: Connection) -> None:
    build_report_territory(conn)
    levels = dict(conn.execute(text("SELECT level, count(*) FROM units WHERE unit_path[1] = :c "
                                    "GROUP BY 1"), {"c": COUNTY}).all())  # fmt: skip
    assert levels == {"county": 1, "township": 2, "work_area": 1, "community": 3, "grid": 12,
                      "microgrid": 2}  # fmt: skip
    # grids tile the county exactly: same area, no overlaps
    area = conn.execute(text("""SELECT sum(ST_Area(geom)), (SELECT ST_Area(geom) FROM units
                                WHERE code = :c) FROM units WHERE level = 'grid'"""), {"c": COUNTY}).one()  # fmt: skip
    assert abs(area[0] - area[1]) < 1e-9
    outside = conn.execute(text("""SELECT count(*) FROM events e JOIN units u ON u.id = e.unit_id
                                   WHERE NOT ST_Covers(u.geom, e.geom)""")).scalar()  # fmt: skip
    assert outside == 0
