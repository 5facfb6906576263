"""A small planned community for the plan tests: a street lattice with grids and micro-grids.

10 × 4 street blocks of 100 m (EPSG:4545 near 108°E 32°N), two buildings in each block. Grid k
holds block columns 2k and 2k+1; each grid has four micro-grids (a column's north or south
half). Blocks hold 50 households, except columns 8-9 with 90: grid 005 is over the 300-500
band (720), the others sit at 400. Staff, events and patrols hang on every grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import geopandas as gpd
import shapely
from sqlalchemy import Connection, text

from etl.write import refresh_totals

COUNTY, TOWN, COMMUNITY = "511781", "511781001", "511781001001"
COLS, ROWS, SIDE = 10, 4, 100.0
X0, Y0 = 500_000.0, 3_550_000.0
HEAVY_COLS = (8, 9)
SINCE = "2024-01-01"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _to_storage(geoms: list[shapely.Geometry]) -> list[shapely.Geometry]:
    # vertices every 100 m, so shared edges stay shared after the (curving) reprojection
    dense = [shapely.segmentize(g, SIDE) for g in geoms]
    return list(gpd.GeoSeries(dense, crs=4545).to_crs(4490).values)


def block_box(col: int, row: int) -> shapely.Geometry:
    x, y = X0 + col * SIDE, Y0 + (ROWS - 1 - row) * SIDE  # row 0 is the northernmost
    return shapely.box(x, y, x + SIDE, y + SIDE)


def grid_code(col: int) -> str:
    return f"{COMMUNITY}{col // 2 + 1:03d}"


def micro_code(col: int, row: int) -> str:
    return f"{grid_code(col)}{(col % 2) + 2 * (row // 2) + 1:03d}"


def block_households(col: int) -> int:
    return 90 if col in HEAVY_COLS else 50


@dataclass
class Community:
    grids: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    buildings: dict[str, tuple[int, int]] = field(default_factory=dict)


def _unit(
    conn: Connection, code: str, name: str, level: str, parent: str | None, geom: object
) -> None:
    conn.execute(
        text("""
        INSERT INTO units (code, name, level, kind, parent_id, parent_code, depth, unit_path, geom,
                           valid_from)
        SELECT :code, :name, :level, 'urban', p.id, :parent, COALESCE(p.depth + 1, 0),
               COALESCE(p.unit_path, '{}') || CAST(:code AS varchar),
               ST_Multi(ST_GeomFromText(:wkt, 4490)), :since
        FROM (SELECT 1) one LEFT JOIN units p ON p.code = :parent AND p.valid_to IS NULL"""),
        {"code": code, "name": name, "level": level, "parent": parent,
         "wkt": shapely.to_wkt(geom), "since": SINCE},
    )  # fmt: skip


def build_community(conn: Connection) -> Community:
    outline = _to_storage([shapely.box(X0, Y0, X0 + COLS * SIDE, Y0 + ROWS * SIDE)])[0]
    _unit(conn, COUNTY, "万源市", "county", None, outline)
    _unit(conn, TOWN, "太平镇", "township", COUNTY, outline)
    _unit(conn, COMMUNITY, "红旗社区", "community", TOWN, outline)
    made = Community()
    for k in range(COLS // 2):
        cells = [(c, r) for c in (2 * k, 2 * k + 1) for r in range(ROWS)]
        made.grids[grid_code(2 * k)] = cells
        shape = _to_storage([shapely.union_all([block_box(c, r) for c, r in cells])])[0]
        _unit(conn, grid_code(2 * k), f"红旗社区第{k + 1}网格", "grid", COMMUNITY, shape)
    for col in range(COLS):
        for half in (0, 1):
            rows = (2 * half, 2 * half + 1)
            shape = _to_storage([shapely.union_all([block_box(col, r) for r in rows])])[0]
            code = micro_code(col, rows[0])
            _unit(conn, code, f"微网格{code[-3:]}", "microgrid", grid_code(col), shape)
    _buildings(conn, made)
    _people_and_events(conn)
    refresh_totals(conn)
    return made


def _buildings(conn: Connection, made: Community) -> None:
    for col in range(COLS):
        for row in range(ROWS):
            box = block_box(col, row)
            x, y = box.bounds[0], box.bounds[1]
            halves = [
                shapely.box(x + 15, y + 30, x + 45, y + 70),
                shapely.box(x + 55, y + 30, x + 85, y + 70),
            ]
            for i, geom in enumerate(_to_storage(halves)):
                code = f"B{col:02d}{row}{i}"
                made.buildings[code] = (col, row)
                hh = block_households(col) // 2
                conn.execute(
                    text("""
                    INSERT INTO buildings (code, address, floors, households, residents, geom,
                                           unit_id, unit_path)
                    SELECT :code, :addr, 6, :hh, :res, ST_Multi(ST_GeomFromText(:wkt, 4490)),
                           u.id, u.unit_path FROM units u
                    WHERE u.code = :micro AND u.valid_to IS NULL"""),
                    {"code": code, "addr": f"红旗路{col * 10 + row}号{i + 1}栋", "hh": hh,
                     "res": hh * 2 + i, "wkt": shapely.to_wkt(geom),
                     "micro": micro_code(col, row)},
                )  # fmt: skip


def _people_and_events(conn: Connection) -> None:
    conn.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) "
            "VALUES ('99', '测试', 3, false) ON CONFLICT DO NOTHING"
        )
    )
    for col in range(0, COLS, 2):
        code = grid_code(col)
        conn.execute(
            text("""INSERT INTO staff (code, name, role, unit_id, unit_code, unit_path)
                    SELECT :s, '网格员', 'full_time', id, code, unit_path FROM units
                    WHERE code = :g AND valid_to IS NULL"""),
            {"s": f"S{code[-3:]}", "g": code},
        )
        for row in range(ROWS):
            point = _to_storage([block_box(col + 1, row).centroid])[0]
            conn.execute(
                text("""INSERT INTO events (code, geom, category_code, priority, channel, reported_at,
                                            status, handling_level)
                        VALUES (:c, ST_GeomFromText(:wkt, 4490), '99', 3, 'patrol', :t,
                                'reported', 'grid')"""),
                {"c": f"E{col}{row}", "wkt": shapely.to_wkt(point), "t": NOW},
            )
            conn.execute(
                text("""INSERT INTO patrols (staff_code, kind, at, geom)
                        VALUES (:s, 'patrol', :t, ST_GeomFromText(:wkt, 4490))"""),
                {"s": f"S{code[-3:]}", "t": NOW.replace(minute=row), "wkt": shapely.to_wkt(point)},
            )
    roads = [
        shapely.LineString([(X0 + i * SIDE, Y0 - 20), (X0 + i * SIDE, Y0 + ROWS * SIDE + 20)])
        for i in range(COLS + 1)
    ]
    roads += [
        shapely.LineString([(X0 - 20, Y0 + j * SIDE), (X0 + COLS * SIDE + 20, Y0 + j * SIDE)])
        for j in range(ROWS + 1)
    ]
    for i, line in enumerate(_to_storage(roads)):
        conn.execute(
            text("""INSERT INTO roads (code, name, road_class, speed_kmh, geom)
                    VALUES (:c, :n, 'residential', 30, ST_GeomFromText(:wkt, 4490))"""),
            {"c": f"R{i}", "n": f"路{i}", "wkt": shapely.to_wkt(line)},
        )  # fmt: skip
    from etl.write import reassign_all

    reassign_all(conn)


def test_the_fixture_is_what_the_docstring_says(conn: Connection) -> None:
    build_community(conn)
    rows = conn.execute(
        text("SELECT code, households FROM units WHERE level = 'grid' ORDER BY code")
    ).all()
    assert [h for _, h in rows] == [400, 400, 400, 400, 720]
    micro = conn.execute(text("SELECT count(*) FROM units WHERE level = 'microgrid'")).scalar()
    assert micro == 20
    orphans = conn.execute(
        text("SELECT count(*) FROM buildings WHERE NOT unit_path && ARRAY[CAST(:c AS varchar)]"),
        {"c": COMMUNITY},
    ).scalar()
    assert orphans == 0
