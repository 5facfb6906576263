"""A tiny governance net for the incident tests, and checks that it is what they assume.

county 511781 > township 511781001 > community 511781001001 > grids …001 (west) and …002
(east), sharing the edge x = 108.01. Categories from data/event_categories.csv.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from etl.demo import load_categories, read_categories

CST = ZoneInfo("Asia/Shanghai")
COUNTY, TOWN, COMM = "511781", "511781001", "511781001001"
WEST, EAST = COMM + "001", COMM + "002"
EDGE_X = 108.01
UNITS = [  # code, level, parent, (x0, y0, x1, y1)
    (COUNTY, "county", None, (108.0, 32.0, 108.02, 32.01)),
    (TOWN, "township", COUNTY, (108.0, 32.0, 108.02, 32.01)),
    (COMM, "community", TOWN, (108.0, 32.0, 108.02, 32.01)),
    (WEST, "grid", COMM, (108.0, 32.0, 108.01, 32.01)),
    (EAST, "grid", COMM, (108.01, 32.0, 108.02, 32.01)),
]


def build_net(conn: Connection) -> None:
    load_categories(conn, read_categories())
    for depth, (code, level, parent, box) in enumerate(UNITS):
        conn.execute(
            text("""
            INSERT INTO units (code, name, level, kind, parent_id, parent_code, depth, unit_path, geom)
            SELECT :code, :code, :level, 'urban', p.id, :parent, :depth,
                   COALESCE(p.unit_path, '{}') || CAST(:code AS varchar),
                   ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490))
            FROM (SELECT 1) one LEFT JOIN units p ON p.code = :parent"""),
            {"code": code, "level": level, "parent": parent, "depth": min(depth, 3),
             "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]},
        )  # fmt: skip


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in November 2026 (Nov 2 is a Monday), China time."""
    return datetime(2026, 11, day, hour, minute, tzinfo=CST)


def test_the_net_nests(conn: Connection) -> None:
    build_net(conn)
    rows = conn.execute(text("SELECT code, unit_path FROM units ORDER BY code")).all()
    paths = {r.code: r.unit_path for r in rows}
    assert paths[WEST] == [COUNTY, TOWN, COMM, WEST]
    assert paths[EAST][:-1] == paths[WEST][:-1]
    n = conn.execute(text("SELECT count(*) FROM event_categories WHERE code LIKE '06%'")).scalar()
    assert n and n > 1
