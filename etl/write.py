"""Writing prepared frames: COPY into a staging table, then one upsert by natural key.

Unchanged rows are left alone (``IS DISTINCT FROM``), so loading the same file twice changes
nothing, and a changed file updates by code.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from etl.reference import leaf_units
from geo.assign import assign_points


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self


def _pg_array(values: object) -> str | None:
    if values is None or (isinstance(values, float) and np.isnan(values)):
        return None
    return "{" + ",".join(str(v) for v in values) + "}"  # type: ignore[attr-defined]


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """Create a temp table of text columns named like the frame and COPY the frame into it."""
    cols = list(frame.columns)
    conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    conn.execute(
        text(f"CREATE TEMP TABLE {table} ({', '.join(f'{c} text' for c in cols)}) ON COMMIT DROP")
    )
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
    raw = conn.connection.driver_connection
    assert raw is not None, "COPY needs a live psycopg connection"
    with (
        raw.cursor() as cur,
        cur.copy(
            f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
        ) as copy,
    ):
        copy.write(buffer.getvalue())


def _epoch(times: pd.Series) -> pd.Series:
    """Seconds since the epoch: formatting a million datetimes as text is the slow part of COPY."""
    values = pd.to_datetime(times)
    seconds = (
        values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype("int64")
        / 1000
    )
    return seconds.where(values.notna())


def _wkb_hex(geoms: gpd.GeoSeries) -> np.ndarray:
    return shapely.to_wkb(np.asarray(geoms.values, dtype=object), hex=True)


def _upsert(
    conn: Connection, table: str, cols: list[str], select_sql: str, conflict: str, n: int
) -> Counts:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "code")
    distinct = f"({', '.join(f't.{c}' for c in cols)}) IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in cols)})"
    sql = f"""
        WITH up AS (
            INSERT INTO {table} AS t ({", ".join(cols)}) {select_sql}
            ON CONFLICT {conflict} DO UPDATE SET {updates} WHERE {distinct}
            RETURNING (xmax = 0) AS inserted)
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
    """
    with _bulk_indexes(conn, table, n):
        ins, upd = conn.execute(text(sql)).one()
    return Counts(ins, upd, n - ins - upd)


# A batch this large, and at least as large as what the table already holds, is written with
# the secondary indexes dropped and rebuilt afterwards (same transaction, so readers see the old
# table until commit). Rebuilding once is about twice as fast as maintaining them row by row.
BULK_MIN_ROWS = 200_000


@contextmanager
def _bulk_indexes(conn: Connection, table: str, n: int) -> Iterator[None]:
    if n < BULK_MIN_ROWS:
        yield
        return
    existing = conn.execute(
        text(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {n}) x")
    ).scalar_one()
    if existing >= n:
        yield
        return
    # unique indexes stay: ON CONFLICT needs them
    rows = conn.execute(
        text("""SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname
                JOIN pg_index x ON x.indexrelid = c.oid
                WHERE i.tablename = :t AND NOT x.indisunique"""),
        {"t": table},
    ).all()
    for name, _ in rows:
        conn.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, definition in rows:
        conn.execute(text(definition))


# --- assignment ------------------------------------------------------------------------------


def assign_to_leaves(
    conn: Connection, points: np.ndarray
) -> tuple[list[int | None], list[str | None]]:
    """Finest unit of each point (lowest code wins on shared edges) and its code path."""
    leaves = leaf_units(conn)
    if leaves.empty or len(points) == 0:
        return [None] * len(points), [None] * len(points)
    idx = assign_points(points, leaves.geometry.values)
    ids = leaves["id"].to_numpy()
    paths = np.array([_pg_array(p) for p in leaves["unit_path"]], dtype=object)
    hit = idx >= 0
    unit_ids = np.where(hit, ids[np.where(hit, idx, 0)].astype(object), np.array(None))
    unit_paths = np.where(hit, paths[np.where(hit, idx, 0)], np.array(None))
    return unit_ids.tolist(), unit_paths.tolist()


# --- per kind --------------------------------------------------------------------------------


def write_units(
    conn: Connection, frame: gpd.GeoDataFrame, *, valid_from: str | None = None
) -> Counts:
    """Parents before children; unit_path from the parent's path."""
    counts = Counts()
    frame = frame.assign(_depth=_depths(frame))
    for _, layer in frame.sort_values(["_depth", "code"]).groupby("_depth", sort=True):
        stage = pd.DataFrame(
            {
                "code": layer["code"],
                "name": layer["name"],
                "level": layer["level"],
                "kind": layer["kind"],
                "parent_code": layer["parent_code"],
                "wkb": _wkb_hex(layer.geometry),
            }
        )
        copy_frame(conn, "stg_units", stage)
        cols = [
            "code",
            "name",
            "level",
            "kind",
            "parent_code",
            "parent_id",
            "depth",
            "unit_path",
            "geom",
        ]
        select = """
            SELECT s.code, s.name, s.level, s.kind, s.parent_code, p.id,
                   COALESCE(p.depth + 1, 0), COALESCE(p.unit_path, '{}') || s.code::varchar,
                   ST_Multi(ST_SetSRID(ST_GeomFromWKB(decode(s.wkb, 'hex')), 4490))
            FROM stg_units s LEFT JOIN units p ON p.code = s.parent_code AND p.valid_to IS NULL
        """
        counts += _upsert(conn, "units", cols, select, "(code) WHERE valid_to IS NULL", len(layer))
    if valid_from:
        conn.execute(
            text("UPDATE units SET valid_from = :d WHERE code = ANY(:c) AND valid_to IS NULL"),
            {"d": valid_from, "c": list(frame["code"])},
        )
    return counts


def _depths(frame: pd.DataFrame) -> list[int]:
    """Depth of each unit within the file (parents in the file come first)."""
    parents = dict(zip(frame["code"], frame["parent_code"], strict=True))
    depths = []
    for code in frame["code"]:
        depth, seen = 0, set()
        while parents.get(code) in parents and code not in seen:
            seen.add(code)
            code = parents[code]
            depth += 1
        depths.append(depth)
    return depths


def write_buildings(conn: Connection, frame: gpd.GeoDataFrame) -> Counts:
    reps = shapely.point_on_surface(np.asarray(frame.geometry.values, dtype=object))
    unit_ids, paths = assign_to_leaves(conn, reps)
    stage = pd.DataFrame(
        {
            "code": frame["code"],
            "address": frame["address"],
            "floors": frame["floors"],
            "households": frame["households"],
            "residents": frame["residents"],
            "unit_id": unit_ids,
            "unit_path": paths,
            "wkb": _wkb_hex(frame.geometry),
        }
    )
    copy_frame(conn, "stg_buildings", stage)
    cols = ["code", "address", "floors", "households", "residents", "unit_id", "unit_path", "geom"]
    select = """SELECT code, address, floors::numeric::smallint, households::numeric::int, residents::numeric::int, unit_id::numeric::int,
                unit_path::varchar[], ST_Multi(ST_SetSRID(ST_GeomFromWKB(decode(wkb, 'hex')), 4490))
                FROM stg_buildings"""
    return _upsert(conn, "buildings", cols, select, "(code)", len(frame))


def write_events(conn: Connection, frame: gpd.GeoDataFrame) -> Counts:
    pts = np.asarray(frame.geometry.values, dtype=object)
    unit_ids, paths = assign_to_leaves(conn, pts)
    stage = pd.DataFrame(
        {
            "code": frame["code"],
            "category_code": frame["category_code"],
            "priority": frame["priority"],
            "channel": frame["channel"],
            "description": frame["description"],
            "reported_at": _epoch(frame["reported_at"]),
            "status": frame["status"],
            "handling_level": frame["handling_level"],
            "unit_id": unit_ids,
            "unit_path": paths,
            "x": shapely.get_x(pts),
            "y": shapely.get_y(pts),
        }
    )
    for col in ("dispatched_at", "handled_at", "closed_at", "satisfaction", "due_at"):
        stage[col] = frame[col].to_numpy() if col in frame else None
    copy_frame(conn, "stg_events", stage)
    cols = [
        "code",
        "category_code",
        "priority",
        "channel",
        "description",
        "reported_at",
        "status",
        "handling_level",
        "unit_id",
        "unit_path",
        "geom",
        "dispatched_at",
        "handled_at",
        "closed_at",
        "satisfaction",
        "due_at",
    ]
    select = """SELECT code, category_code, priority::numeric::smallint, channel, description,
                to_timestamp(reported_at::float8), status, handling_level, unit_id::numeric::int, unit_path::varchar[],
                ST_SetSRID(ST_MakePoint(x::float8, y::float8), 4490), dispatched_at::timestamptz,
                handled_at::timestamptz, closed_at::timestamptz, satisfaction::numeric::smallint,
                due_at::timestamptz FROM stg_events"""
    return _upsert(conn, "events", cols, select, "(code)", len(frame))


def write_staff(conn: Connection, frame: pd.DataFrame) -> Counts:
    stage = frame[["code", "name", "role", "phone", "unit_code"]]
    copy_frame(conn, "stg_staff", stage)
    cols = ["code", "name", "role", "phone", "unit_code", "unit_id", "unit_path"]
    select = """SELECT s.code, s.name, s.role, s.phone, s.unit_code, u.id, u.unit_path FROM stg_staff s
                JOIN units u ON u.code = s.unit_code AND u.valid_to IS NULL"""
    return _upsert(conn, "staff", cols, select, "(code)", len(frame))


def write_responders(conn: Connection, frame: gpd.GeoDataFrame) -> Counts:
    pts = np.asarray(frame.geometry.values, dtype=object)
    _, paths = assign_to_leaves(conn, pts)
    stage = pd.DataFrame(
        {
            "code": frame["code"],
            "name": frame["name"],
            "type": frame["type"],
            "status": frame["status"],
            "unit_path": paths,
            "x": shapely.get_x(pts),
            "y": shapely.get_y(pts),
        }
    )
    copy_frame(conn, "stg_responders", stage)
    cols = ["code", "name", "type", "status", "unit_path", "geom"]
    select = """SELECT code, name, type, status, unit_path::varchar[],
                ST_SetSRID(ST_MakePoint(x::float8, y::float8), 4490) FROM stg_responders"""
    return _upsert(conn, "responders", cols, select, "(code)", len(frame))


def write_patrols(conn: Connection, frame: gpd.GeoDataFrame) -> Counts:
    pts = np.asarray(frame.geometry.values, dtype=object)
    unit_ids, paths = assign_to_leaves(conn, pts)
    stage = pd.DataFrame(
        {
            "staff_code": frame["staff_code"],
            "kind": frame["kind"],
            "at": frame["at"],
            "unit_id": unit_ids,
            "unit_path": paths,
            "x": shapely.get_x(pts),
            "y": shapely.get_y(pts),
        }
    )
    copy_frame(conn, "stg_patrols", stage)
    cols = ["staff_code", "staff_id", "kind", "at", "unit_id", "unit_path", "geom"]
    select = """SELECT s.staff_code, st.id, s.kind, s.at::timestamptz, s.unit_id::numeric::int,
                s.unit_path::varchar[], ST_SetSRID(ST_MakePoint(s.x::float8, s.y::float8), 4490)
                FROM stg_patrols s LEFT JOIN staff st ON st.code = s.staff_code"""
    return _upsert(conn, "patrols", cols, select, "(staff_code, at, kind)", len(frame))


def write_roads(conn: Connection, frame: gpd.GeoDataFrame) -> Counts:
    frame = _explode_lines(frame)
    stage = pd.DataFrame(
        {
            "code": frame["code"],
            "name": frame["name"],
            "road_class": frame["road_class"],
            "speed_kmh": frame["speed_kmh"],
            "wkb": _wkb_hex(frame.geometry),
        }
    )
    copy_frame(conn, "stg_roads", stage)
    cols = ["code", "name", "road_class", "speed_kmh", "geom"]
    select = """SELECT code, name, road_class, speed_kmh::numeric,
                ST_SetSRID(ST_GeomFromWKB(decode(wkb, 'hex')), 4490) FROM stg_roads"""
    return _upsert(conn, "roads", cols, select, "(code)", len(frame))


def _explode_lines(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """MultiLineStrings become one row per part, coded CODE-1, CODE-2, …"""
    exploded = frame.explode(index_parts=False)
    multi = exploded.index.duplicated(keep=False)
    part = exploded.groupby(level=0).cumcount() + 1
    codes = exploded["code"].astype(str)
    exploded["code"] = np.where(multi, codes + "-" + part.astype(str), codes)
    return exploded.reset_index(drop=True)


WRITERS = {
    "units": write_units,
    "buildings": write_buildings,
    "events": write_events,
    "staff": write_staff,
    "responders": write_responders,
    "patrols": write_patrols,
    "roads": write_roads,
}


# --- after loads -----------------------------------------------------------------------------


def reassign_all(conn: Connection) -> None:
    """After units change: every building, event and patrol to its finest unit again."""
    for table, geom_sql in (
        ("buildings", "ST_PointOnSurface(geom)"),
        ("events", "geom"),
        ("patrols", "geom"),
    ):
        rows = conn.execute(
            text(f"SELECT id, ST_X({geom_sql}), ST_Y({geom_sql}) FROM {table}")
        ).all()
        if not rows:
            continue
        arr = np.array([(r[1], r[2]) for r in rows], dtype=float)
        unit_ids, paths = assign_to_leaves(conn, shapely.points(arr))
        copy_frame(
            conn,
            "stg_assign",
            pd.DataFrame({"id": [r[0] for r in rows], "unit_id": unit_ids, "unit_path": paths}),
        )
        conn.execute(
            text(f"""
            UPDATE {table} t SET unit_id = s.unit_id::numeric::int, unit_path = s.unit_path::varchar[]
            FROM stg_assign s WHERE t.id = s.id::bigint
              AND (t.unit_id, t.unit_path) IS DISTINCT FROM (s.unit_id::numeric::int, s.unit_path::varchar[])""")
        )
    conn.execute(
        text("""
        UPDATE staff s SET unit_id = u.id, unit_path = u.unit_path FROM units u
        WHERE u.code = s.unit_code AND u.valid_to IS NULL
          AND (s.unit_id, s.unit_path) IS DISTINCT FROM (u.id, u.unit_path)""")
    )


def refresh_totals(conn: Connection) -> None:
    """Households, residents and buildings of every current unit, summed from its buildings."""
    conn.execute(
        text("""
        WITH sums AS (
            SELECT p.code, sum(b.households) AS hh, sum(b.residents) AS res, count(*) AS n
            FROM buildings b, unnest(b.unit_path) AS p(code) GROUP BY p.code)
        UPDATE units u SET households = COALESCE(s.hh, 0), residents = COALESCE(s.res, 0),
                           buildings = COALESCE(s.n, 0)
        FROM units u2 LEFT JOIN sums s ON s.code = u2.code
        WHERE u.id = u2.id AND u.valid_to IS NULL
          AND (u.households, u.residents, u.buildings)
              IS DISTINCT FROM (COALESCE(s.hh, 0), COALESCE(s.res, 0), COALESCE(s.n, 0))""")
    )
