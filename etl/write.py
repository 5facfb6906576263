"""Writing prepared frames: COPY into a staging table, then one upsert by natural key. Events
go as Arrow in PostgreSQL's binary COPY format (``write_arrow``), straight into an empty table.

Unchanged rows are left alone (``IS DISTINCT FROM``), so loading the same file twice changes
nothing, and a changed file updates by code. Rows the workflow owns (:data:`KEEP_STORED`: an event
someone has acted on) are never overwritten by a load: they are left as they are and counted as
``kept`` with their codes, so the caller can say which ones to change through the workflow.
"""

from __future__ import annotations

import io
import itertools
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pgpq
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import shapely
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Connection, text

from etl.reference import leaf_units
from geo.assign import PointAssigner, assign_points


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # rows the file would change but that a load may not (KEEP_STORED)
    kept_codes: list[str] = field(default_factory=list)  # their codes, the first KEPT_LISTED

    def __iadd__(self, other: Counts) -> Counts:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.kept += other.kept
        self.kept_codes = (self.kept_codes + other.kept_codes)[:KEPT_LISTED]
        return self


# Per table: when a stored row must not be overwritten by a load (SQL over the stored row ``t``
# and the incoming row ``{new}``). An event is the workflow's once anyone has acted on it
# (status past ``reported``, or a version past the report's, e.g. an escalation), and a load
# may not move a fresh report through the workflow either: every such change goes through
# ``etl.incidents.act``, which checks it, writes the history and bumps the version.
KEEP_STORED = {
    "events": "t.status <> 'reported' OR t.version > 1 OR t.status IS DISTINCT FROM {new}.status",
}
KEPT_LISTED = 100


def _pg_array(values: object) -> str | None:
    if values is None or (isinstance(values, float) and np.isnan(values)):
        return None
    return "{" + ",".join(str(v) for v in values) + "}"  # type: ignore[attr-defined]


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """Create a text temp table named like the frame's columns and COPY the frame into it.

    The CSV is written by Arrow: ~10x faster than ``DataFrame.to_csv`` on a million rows.
    Missing values become NULL, strings stay quoted so an empty string stays empty.
    """
    cols = list(frame.columns)
    conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    defs = ", ".join(f"{c} text" for c in cols)
    conn.execute(text(f"CREATE TEMP TABLE {table} ({defs}) ON COMMIT DROP"))
    arrays = [_arrow_column(frame[c]) for c in cols]
    buffer = io.BytesIO()
    pa_csv.write_csv(
        pa.Table.from_arrays(arrays, names=cols), buffer, pa_csv.WriteOptions(include_header=False)
    )
    with (
        _raw_cursor(conn) as cur,
        cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)") as copy,
    ):
        copy.write(buffer.getbuffer())


def _raw_cursor(conn: Connection) -> psycopg.Cursor:
    raw = conn.connection.driver_connection
    assert raw is not None, "COPY needs a live psycopg connection"
    return raw.cursor()


# Rows per binary COPY message batch: the next batch is encoded while the last one is sent
COPY_BATCH_ROWS = 65_536


def copy_arrow(conn: Connection, table: str, parts: Iterable[pa.Table]) -> int:
    """COPY Arrow tables (columns named like ``table``'s) into ``table`` in PostgreSQL's binary
    format, encoded by pgpq: nothing is formatted as text and parsed back, which halves the
    server's share of a bulk load. Each column's Arrow type must be the binary form of the
    table column's type (int16 for smallint, timestamp for timestamptz, EWKB for geometry…).
    A worker thread sends while the next part is prepared. Returns the rows copied."""
    parts = iter(parts)
    first = next(parts)
    encoder = pgpq.ArrowToPostgresBinaryEncoder(first.schema)
    sql = f"COPY {table} ({', '.join(first.column_names)}) FROM STDIN WITH (FORMAT binary)"
    rows = 0
    with _raw_cursor(conn) as cur, cur.copy(sql, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(encoder.write_header())
        for part in itertools.chain([first], parts):
            for batch in part.to_batches(max_chunksize=COPY_BATCH_ROWS):
                copy.write(encoder.write_batch(batch))
            rows += part.num_rows
        copy.write(encoder.finish())
    return rows


def _arrow_strings(values: pd.Series) -> pa.Array:
    return _arrow_column(values).cast(pa.string())


def _arrow_ints(values: pd.Series, kind: pa.DataType) -> pa.Array:
    return pa.array(pd.array(values, dtype="Int64"), from_pandas=True).cast(kind)


def _arrow_times(values: pd.Series) -> pa.Array:
    """Timestamps with time zone as UTC microseconds (the binary form of timestamptz)."""
    times = pd.to_datetime(values, utc=True)
    return pa.array(times, from_pandas=True).cast(pa.timestamp("us", tz="UTC"), safe=False)


_EWKB_POINT = np.dtype(
    [("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("x", "<f8"), ("y", "<f8")]
)


def _arrow_ewkb_points(x: np.ndarray, y: np.ndarray, srid: int = 4490) -> pa.Array:
    """Points as EWKB (little-endian, SRID flag), built in one numpy record array."""
    records = np.empty(len(x), dtype=_EWKB_POINT)
    records["order"], records["type"], records["srid"] = 1, 0x20000001, srid
    records["x"], records["y"] = x, y
    kind = pa.binary(_EWKB_POINT.itemsize)
    return pa.FixedSizeBinaryArray.from_buffers(kind, len(x), [None, pa.py_buffer(records)])


VARCHAR_OID = 1043


def _pg_varchar_array(values: list[str]) -> bytes:
    """The binary form of a one-dimensional varchar[] without NULLs (array_recv's input)."""
    parts = [struct.pack(">iiiii", 1, 0, VARCHAR_OID, len(values), 1)]
    for value in values:
        encoded = value.encode()
        parts.append(struct.pack(">i", len(encoded)) + encoded)
    return b"".join(parts)


def _arrow_column(values: pd.Series) -> pa.Array:
    """One column for Arrow; mixed Python objects (e.g. codes read as int and str) become text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if _missing(v) else str(v) for v in values], type=pa.string())


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _wkb_hex(geoms: gpd.GeoSeries) -> np.ndarray:
    return shapely.to_wkb(np.asarray(geoms.values, dtype=object), hex=True)


def _upsert(
    conn: Connection, table: str, cols: list[str], select_sql: str, conflict: str, n: int
) -> Counts:
    """Insert new rows and update changed ones by natural key (``conflict``: the key columns in
    parentheses, then an optional ``WHERE`` of a partial unique index); unchanged rows stay."""
    plan = _BulkPlan.for_batch(conn, table, n, cols)
    return _planned_upsert(conn, plan, table, cols, select_sql, conflict, n)


def _planned_upsert(
    conn: Connection,
    plan: _BulkPlan | None,
    table: str,
    cols: list[str],
    select_sql: str,
    conflict: str,
    n: int,
) -> Counts:
    """``_upsert`` with the batch's bulk plan already made (None: not a bulk batch)."""
    if plan is not None:
        with plan:
            counts = _bulk_upsert(conn, table, cols, select_sql, conflict, n, plan.existing)
    else:
        counts = _conflict_upsert(conn, table, cols, select_sql, conflict, n)
    if table in KEEP_STORED and counts.inserted + counts.updated < n:
        kept = _kept(conn, table, cols, select_sql, conflict)
        counts.kept, counts.unchanged = len(kept), counts.unchanged - len(kept)
        counts.kept_codes = kept[:KEPT_LISTED]
    return counts


def _conflict_upsert(
    conn: Connection, table: str, cols: list[str], select_sql: str, conflict: str, n: int
) -> Counts:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "code")
    sql = f"""
        WITH up AS (
            INSERT INTO {table} AS t ({", ".join(cols)}) {select_sql}
            ON CONFLICT {conflict} DO UPDATE SET {updates}
            WHERE {_changed(cols, "EXCLUDED")}{_unless_kept(table, "EXCLUDED")}
            RETURNING (xmax = 0) AS inserted)
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
    """
    ins, upd = conn.execute(text(sql)).one()
    return Counts(ins, upd, n - ins - upd)


def _unless_kept(table: str, new: str) -> str:
    """SQL appended to an upsert's update condition: ``AND NOT (…)`` of :data:`KEEP_STORED`."""
    keep = KEEP_STORED.get(table)
    return f" AND NOT ({keep.format(new=new)})" if keep else ""


def _key_match(conflict: str) -> tuple[list[str], str]:
    """The key columns of ``conflict`` and SQL matching stored row ``t`` to incoming row ``s``."""
    keys, _, where = conflict.strip().partition(")")
    key_cols = [k.strip() for k in keys.strip("( ").split(",")]
    partial = f" AND t.{where.strip().removeprefix('WHERE').strip()}" if where.strip() else ""
    return key_cols, " AND ".join(f"t.{k} = s.{k}" for k in key_cols) + partial


def _kept(
    conn: Connection, table: str, cols: list[str], select_sql: str, conflict: str
) -> list[str]:
    """Codes of stored rows the batch would have changed but that were kept (after the write:
    a row updated by it now equals its incoming row, so only kept rows still differ)."""
    _, match = _key_match(conflict)
    keep = KEEP_STORED[table].format(new="s")
    sql = f"""WITH s ({", ".join(cols)}) AS ({select_sql})
              SELECT t.code FROM {table} t JOIN s ON {match}
              WHERE ({keep}) AND {_changed(cols, "s")} ORDER BY t.code"""
    return list(conn.execute(text(sql)).scalars())


def _changed(cols: list[str], new: str) -> str:
    """SQL true when row ``t`` differs from row ``new`` in any of ``cols`` (NULL-safe)."""
    return (
        f"({', '.join(f't.{c}' for c in cols)}) IS DISTINCT FROM "
        f"({', '.join(f'{new}.{c}' for c in cols)})"
    )


def _bulk_upsert(
    conn: Connection,
    table: str,
    cols: list[str],
    select_sql: str,
    conflict: str,
    n: int,
    existing: int,
) -> Counts:
    """The same upsert as two plain statements (no unique index needed: the table is locked and
    the batch has no duplicate keys): changed rows updated, then rows with new keys inserted."""
    key_cols, match = _key_match(conflict)
    source = f"WITH s ({', '.join(cols)}) AS ({select_sql})"
    updated = 0
    if existing:
        sets = ", ".join(f"{c} = s.{c}" for c in cols if c not in key_cols)
        updated = conn.execute(
            text(
                f"{source} UPDATE {table} t SET {sets} FROM s WHERE {match} "
                f"AND {_changed(cols, 's')}{_unless_kept(table, 's')}"
            )
        ).rowcount
    new = f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match})" if existing else ""
    inserted = conn.execute(
        text(f"{source} INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM s {new}")
    ).rowcount
    return Counts(inserted, updated, n - inserted - updated)


# A batch this large, and at least as large as what the table already holds, is written with
# every index but the primary key and every foreign key dropped, then rebuilt, in the same
# transaction (readers see the old table until commit; writers wait on its lock). Building an
# index once is 2-3x faster than maintaining it row by row, and re-adding a foreign key checks
# every row in one join instead of one lookup per row (references were validated before writing).
BULK_MIN_ROWS = 200_000


@dataclass
class _BulkPlan:
    conn: Connection
    existing: int
    drop: list[str]
    rebuild: list[str]
    say: Callable[[str], None] = lambda _message: None

    @classmethod
    def for_batch(
        cls,
        conn: Connection,
        table: str,
        n: int,
        columns: list[str],
        say: Callable[[str], None] = lambda _message: None,
    ) -> _BulkPlan | None:
        """None unless the batch of ``n`` rows (writing ``columns``) is bulk for ``table``;
        ``say`` hears how long the rebuild took."""
        if n < BULK_MIN_ROWS:
            return None
        existing = conn.execute(
            text(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {n}) x")
        ).scalar_one()
        if existing >= n:
            return None
        params = {"t": table}
        owner = conn.execute(  # dropping indexes and keys needs the table's owner
            text("SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
                 "WHERE oid = CAST(:t AS regclass)"), params,
        ).scalar_one()  # fmt: skip
        if not owner:
            return None
        # constraints (foreign keys, unique) first; then indexes no constraint owns
        constraints = conn.execute(
            text("""SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
                    WHERE c.conrelid = CAST(:t AS regclass) AND (c.contype = 'f' OR c.contype = 'u'
                      AND NOT EXISTS (SELECT 1 FROM pg_constraint r  -- a key others refer to stays
                                      WHERE r.contype = 'f' AND r.conindid = c.conindid))
                    ORDER BY c.contype = 'f' DESC"""),
            params,
        ).all()
        # A partial index over columns the batch does not write (say ``responder_id IS NOT
        # NULL``) gets no entries from it: kept, it costs a predicate test per row; rebuilt, a
        # scan of the whole table.
        indexes = [
            (name, definition)
            for name, definition, partial, over in conn.execute(
                text("""SELECT c.relname, pg_get_indexdef(x.indexrelid), x.indpred IS NOT NULL,
                               ARRAY(SELECT a.attname::text FROM pg_depend d
                                     JOIN pg_attribute a ON a.attrelid = d.refobjid
                                                        AND a.attnum = d.refobjsubid
                                     WHERE d.classid = 'pg_class'::regclass
                                       AND d.objid = x.indexrelid AND d.refobjsubid > 0)
                        FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                        WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisprimary
                          AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                          WHERE k.conindid = x.indexrelid)"""),
                params,
            )
            if not (partial and set(over).isdisjoint(columns))
        ]
        drop = [f'ALTER TABLE {table} DROP CONSTRAINT "{name}"' for name, _ in constraints]
        drop += [f'DROP INDEX "{name}"' for name, _ in indexes]
        # rebuild indexes before foreign keys: the keys' checks then run against a whole table
        rebuild = [definition for _, definition in indexes]
        rebuild += [
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for name, definition in reversed(constraints)
        ]
        return cls(conn, existing, drop, rebuild, say)

    def __enter__(self) -> _BulkPlan:
        for sql in self.drop:
            self.conn.execute(text(sql))
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            return  # the transaction is rolled back: nothing to rebuild
        self.conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        started = time.perf_counter()
        self.say(f"rebuilding {len(self.rebuild)} indexes and keys")
        for sql in self.rebuild:
            self.conn.execute(text(sql))
        self.say(
            f"rebuilt {len(self.rebuild)} indexes and keys in {time.perf_counter() - started:.1f} s"
        )


# --- assignment ------------------------------------------------------------------------------


def assign_to_leaves(
    conn: Connection, points: np.ndarray
) -> tuple[pd.api.extensions.ExtensionArray, np.ndarray]:
    """Finest unit of each point (lowest code wins on shared edges): its id (Int32, NA when
    none) and its code path as a PostgreSQL array literal (None when none)."""
    leaves = leaf_units(conn)
    if leaves.empty or len(points) == 0:
        return pd.array([None] * len(points), dtype="Int32"), np.full(len(points), None)
    idx = assign_points(points, leaves.geometry.values)
    hit = idx >= 0
    take = np.where(hit, idx, 0)
    ids = leaves["id"].to_numpy(dtype=np.int32)[take]
    unit_ids = pd.arrays.IntegerArray(ids, ~hit)
    paths = np.array([_pg_array(p) for p in leaves["unit_path"]], dtype=object)[take]
    paths[~hit] = None
    return unit_ids, paths


@dataclass
class LeafUnits:
    """The current leaf units, ready to assign points to, in one batch or many: per point its
    leaf's id (int32) and code path (binary varchar[]), NULL when it lies in none."""

    ids: pa.Array
    paths: pa.Array
    assigner: PointAssigner | None

    @classmethod
    def load(cls, conn: Connection, *, expected_points: int) -> LeafUnits:
        leaves = leaf_units(conn)
        return cls(
            pa.array(leaves["id"].to_numpy(dtype=np.int32)),
            pa.array([_pg_varchar_array(p) for p in leaves["unit_path"]], pa.binary()),
            PointAssigner(leaves.geometry.values, expected_points=expected_points)
            if len(leaves)
            else None,
        )

    def of(self, points: np.ndarray) -> tuple[pa.Array, pa.Array]:
        if self.assigner is None or not len(points):
            return pa.nulls(len(points), pa.int32()), pa.nulls(len(points), pa.binary())
        idx = self.assigner(points)
        take = pa.array(idx, mask=idx < 0)
        return self.ids.take(take), self.paths.take(take)


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
    leaves = LeafUnits.load(conn, expected_points=len(frame))
    return write_arrow(conn, "events", [events_arrow(frame, leaves)], "(code)")


def events_arrow(frame: gpd.GeoDataFrame, leaves: LeafUnits) -> pa.Table:
    """Prepared events as an Arrow table typed like the ``events`` table, each assigned to its
    leaf unit."""
    pts = np.asarray(frame.geometry.values, dtype=object)
    unit_ids, unit_paths = leaves.of(pts)
    n = len(frame)

    def times(col: str) -> pa.Array:
        return _arrow_times(frame[col]) if col in frame else pa.nulls(n, pa.timestamp("us", "UTC"))

    return pa.table(
        {
            "code": _arrow_strings(frame["code"]),
            "category_code": _arrow_strings(frame["category_code"]),
            "priority": _arrow_ints(frame["priority"], pa.int16()),
            "channel": _arrow_strings(frame["channel"]),
            "description": _arrow_strings(frame["description"]),
            "reported_at": times("reported_at"),
            "status": _arrow_strings(frame["status"]),
            "handling_level": _arrow_strings(frame["handling_level"]),
            "unit_id": unit_ids,
            "unit_path": unit_paths,
            "geom": _arrow_ewkb_points(shapely.get_x(pts), shapely.get_y(pts)),
            "dispatched_at": times("dispatched_at"),
            "handled_at": times("handled_at"),
            "closed_at": times("closed_at"),
            "satisfaction": _arrow_ints(frame["satisfaction"], pa.int16())
            if "satisfaction" in frame
            else pa.nulls(n, pa.int16()),
            "due_at": times("due_at"),
        }
    )


def write_arrow(
    conn: Connection,
    table: str,
    parts: Iterable[pa.Table],
    conflict: str,
    *,
    expected_rows: int | None = None,
    say: Callable[[str], None] | None = None,
) -> Counts:
    """Upsert Arrow tables whose columns are named and typed like ``table``'s, by natural key.

    ``parts`` may be a stream (each part is sent while the next is prepared); then
    ``expected_rows`` (at most) decides whether the batch is bulk. Into an empty table rows
    are copied straight in: the batch was checked for duplicate keys (a writer racing in with
    one of its codes makes the load fail, never half-write it). Otherwise they are copied into
    a staging table of the same column types and upserted from there."""
    parts = iter(parts)
    first = next(parts, None)
    if first is None:
        return Counts()
    stream = itertools.chain([first], parts)
    n, cols = expected_rows or first.num_rows, first.column_names
    say = say or (lambda _message: None)
    plan = _BulkPlan.for_batch(conn, table, n, cols, say)
    if plan is None:
        empty = conn.execute(text(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")).scalar_one()
        if empty:
            return Counts(inserted=_timed_copy(conn, table, stream, say))
    elif plan.existing == 0:
        with plan:  # the table is locked: its serial columns can take a block of values at once
            serials = _reserve_serials(conn, table, n)
            copied = _timed_copy(conn, table, _with_serials(stream, serials), say)
            return Counts(inserted=copied)
    staging = f"stg_{table}"
    conn.execute(text(f"DROP TABLE IF EXISTS {staging}"))
    conn.execute(
        text(f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
             f"SELECT {', '.join(cols)} FROM {table} WITH NO DATA")
    )  # fmt: skip
    n = _timed_copy(conn, staging, stream, say)
    select = f"SELECT {', '.join(cols)} FROM {staging}"
    return _planned_upsert(conn, plan, table, cols, select, conflict, n)


def _timed_copy(
    conn: Connection, table: str, parts: Iterable[pa.Table], say: Callable[[str], None]
) -> int:
    started = time.perf_counter()
    say(f"copying into {table}")
    rows = copy_arrow(conn, table, parts)
    say(f"copied {rows:,} rows into {table} in {time.perf_counter() - started:.1f} s")
    return rows


def _reserve_serials(conn: Connection, table: str, n: int) -> dict[str, np.ndarray]:
    """For each column of ``table`` that defaults to ``nextval`` of a sequence stepping by 1, a
    block of ``n`` values drawn at once (one ``setval`` instead of a ``nextval`` per row, ~0.3 s
    per million rows each). Only while the caller holds the table's exclusive lock: every
    other draw from these sequences is a write to the table, so waits until commit."""
    rows = conn.execute(
        text("""SELECT a.attname, s.seqrelid::regclass::text FROM pg_attrdef d
                JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                JOIN pg_depend p ON p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid
                                AND p.refclassid = 'pg_class'::regclass
                JOIN pg_sequence s ON s.seqrelid = p.refobjid
                WHERE d.adrelid = CAST(:t AS regclass) AND s.seqincrement = 1
                  AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'"""),
        {"t": table},
    ).all()
    blocks = {}
    for column, sequence in rows:
        last = conn.execute(
            text("SELECT setval(CAST(:s AS regclass), nextval(CAST(:s AS regclass)) + :n - 1)"),
            {"s": sequence, "n": n},
        ).scalar_one()
        blocks[column] = np.arange(last - n + 1, last + 1, dtype=np.int64)
    return blocks


def _with_serials(parts: Iterable[pa.Table], serials: dict[str, np.ndarray]) -> Iterator[pa.Table]:
    """Each part with the next values of each reserved serial column appended."""
    start = 0
    for part in parts:
        end = start + part.num_rows
        for column, values in serials.items():
            part = part.append_column(column, pa.array(values[start:end]))
        start = end
        yield part


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
