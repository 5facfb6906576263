"""Read queries of the one-screen command centre (一屏监测).

Every function takes a bind (engine or connection) and a :class:`~etl.queries.Scope`; results are
plain Python values the dashboard shapes into components. Payloads are kept compact on purpose:
unit geometry is simplified per view, events travel as column arrays, the heatmap as cells.

Definitions (CJ/T 292 wording, for a time window ``[start, end)`` seen at ``asof``):

* reported: events reported in the window (cancelled ones included, they were reported);
* open: reported before ``asof``, not cancelled and not closed at ``asof`` (a snapshot);
* overdue: open with ``due_at < asof``;
* closure rate 办结率: closed by ``asof`` / reported in the window (cancelled excluded);
* on-time closure rate 按期办结率: closed by their ``due_at`` / cases due (应结案: closed, or
  ``due_at < asof``), among those reported in the window;
* response time: median minutes from report to dispatch; handling time: median hours from
  dispatch to closure;
* satisfaction: mean of the 1-5 evaluations of events reported in the window;
* patrol coverage: covered grid-days / (grids x days in the window); for one day that is the share
  of grids patrolled that day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from etl.queries import Scope

CLOSED = ("closed", "evaluated")
EVENT_COLUMNS = (
    "id", "lon", "lat", "cat", "status", "prio", "rep", "due", "closed", "level", "hunit",
    "resp", "code", "chan", "rev",
)  # fmt: skip
"""Columns of the compact event rows (times in epoch seconds) the map and the feed use."""

Bind = Engine | Connection


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` looked at from ``asof`` (all timezone-aware)."""

    start: datetime
    end: datetime
    asof: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end", "asof"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"Window.{name} must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"Window end {self.end} is not after start {self.start}")

    @property
    def days(self) -> int:
        return max(1, math.ceil((self.end - self.start) / timedelta(days=1)))

    def previous(self) -> Window:
        """The window of the same length just before (today -> yesterday)."""
        length = self.end - self.start
        return Window(self.start - length, self.start, self.asof - length)

    def params(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "asof": self.asof}


@dataclass(frozen=True)
class UnitRef:
    code: str
    name: str
    level: str
    depth: int
    path: tuple[tuple[str, str], ...]  # (code, name) from the root down to this unit
    bounds: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east))
    child_level: str | None
    households: int


@contextmanager
def _connect(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


def _all(bind: Bind, sql: str, params: Mapping[str, object]) -> list[Any]:
    with _connect(bind) as conn:
        return list(conn.execute(text(sql), params).all())


def _scoped(scope: Scope, params: Mapping[str, object]) -> dict[str, object]:
    return {**params, **scope.params()}


# --- units -------------------------------------------------------------------------------------


def root_unit(bind: Bind, scope: Scope) -> UnitRef | None:
    """The shallowest current unit the scope can see (the county for the whole territory)."""
    sql = f"SELECT code FROM units WHERE valid_to IS NULL AND {scope.sql()} ORDER BY depth, code LIMIT 1"
    rows = _all(bind, sql, scope.params())
    return unit_ref(bind, scope, rows[0].code) if rows else None


def unit_ref(bind: Bind, scope: Scope, code: str) -> UnitRef | None:
    """One current unit with its breadcrumb, bounds and the level of its children."""
    sql = f"""
        SELECT u.code, u.name, u.level, u.depth, u.households,
               ST_YMin(u.geom) AS s, ST_XMin(u.geom) AS w, ST_YMax(u.geom) AS n, ST_XMax(u.geom) AS e,
               (SELECT array_agg(a.name ORDER BY a.depth) FROM units a
                 WHERE a.valid_to IS NULL AND a.code = ANY(u.unit_path)) AS names,
               u.unit_path,
               (SELECT c.level FROM units c WHERE c.valid_to IS NULL AND c.parent_code = u.code
                 GROUP BY c.level ORDER BY count(*) DESC LIMIT 1) AS child_level
        FROM units u
        WHERE u.valid_to IS NULL AND u.code = :code AND {scope.sql("u")}"""
    rows = _all(bind, sql, _scoped(scope, {"code": code}))
    if not rows:
        return None
    r = rows[0]
    names = list(r.names or [])
    path = tuple(zip(r.unit_path, names, strict=False)) if len(names) == len(r.unit_path) else ()
    return UnitRef(
        code=r.code, name=r.name, level=r.level, depth=r.depth, path=path or ((r.code, r.name),),
        bounds=((r.s, r.w), (r.n, r.e)), child_level=r.child_level, households=r.households,
    )  # fmt: skip


def level_names(bind: Bind) -> dict[str, tuple[str, str]]:
    """Level key -> (Chinese name, English name), in rank order."""
    rows = _all(bind, "SELECT key, name, name_en FROM levels ORDER BY rank", {})
    return {r.key: (r.name, r.name_en) for r in rows}


def unit_layer(
    bind: Bind, scope: Scope, *, within: str, depth: int, tolerance: float = 0.0
) -> dict[str, Any]:
    """Current units at ``depth`` inside unit ``within`` as a GeoJSON FeatureCollection.

    Geometry is simplified by ``tolerance`` degrees (topology preserved) and written with 5
    decimals (about 1 m), which is all a screen can show and keeps the payload small.
    """
    sql = f"""
        SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(
          json_build_object('type', 'Feature', 'id', code,
            'geometry', ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, :tol), 5)::json,
            'properties', json_build_object('code', code, 'name', name, 'level', level,
              'hh', households, 'res', residents, 'bld', buildings,
              'lx', ST_X(ST_PointOnSurface(geom)), 'ly', ST_Y(ST_PointOnSurface(geom))))
          ORDER BY code), '[]'::json))::text
        FROM units WHERE valid_to IS NULL AND depth = :depth AND unit_path @> ARRAY[:within]::varchar[]
          AND {scope.sql()}"""
    rows = _all(bind, sql, _scoped(scope, {"within": within, "depth": depth, "tol": tolerance}))
    return json.loads(rows[0][0])


def roads_layer(
    bind: Bind,
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]],
    tolerance: float,
    limit: int = 20000,
) -> dict[str, Any]:
    """Roads inside ``bounds`` ((south, west), (north, east)) for the offline basemap."""
    (s, w), (n, e) = bounds
    sql = """
        SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(
          json_build_object('type', 'Feature',
            'geometry', ST_AsGeoJSON(ST_Simplify(geom, :tol), 5)::json,
            'properties', json_build_object('c', road_class, 'n', name))), '[]'::json))::text
        FROM (SELECT geom, road_class, name FROM roads
              WHERE geom && ST_MakeEnvelope(:w, :s, :e, :n, 4490) LIMIT :limit) r"""
    params = {"w": w, "s": s, "e": e, "n": n, "tol": tolerance, "limit": limit}
    return json.loads(_all(bind, sql, params)[0][0])


# --- events ------------------------------------------------------------------------------------

_EVENT_SELECT = """
    SELECT e.id, round(ST_X(e.geom)::numeric, 5)::float AS lon, round(ST_Y(e.geom)::numeric, 5)::float AS lat,
           e.category_code AS cat, e.status, e.priority AS prio,
           extract(epoch FROM e.reported_at)::bigint AS rep, extract(epoch FROM e.due_at)::bigint AS due,
           extract(epoch FROM e.closed_at)::bigint AS closed, e.handling_level AS level,
           e.handling_unit_code AS hunit, e.responder_id AS resp, e.code, e.channel AS chan, e.rev
    FROM events e"""


def max_rev(bind: Bind) -> int:
    """The change cursor: the highest ``rev`` stamped on any event (one index probe)."""
    return int(_all(bind, "SELECT coalesce(max(rev), 0) FROM events", {})[0][0])


def map_events(
    bind: Bind, scope: Scope, *, within: str, window: Window, limit: int = 5000
) -> list[tuple[Any, ...]]:
    """Events to draw: reported in the window, or still open at ``asof``; overdue first.

    An event without a due time is not overdue (a NULL key would otherwise sort first).

    The inner query picks the ids on the partial index of open events and sorts only the key;
    the display columns are computed for the ``limit`` rows kept, not for every open event of
    the province (that projection was most of the time).
    """
    overdue = "(e.closed_at IS NULL AND coalesce(e.due_at < :asof, false))"
    order = f"{overdue} DESC, e.reported_at DESC, e.id DESC"
    sql = f"""{_EVENT_SELECT}
        JOIN (SELECT e.id FROM events e
              WHERE e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")} AND e.reported_at < :asof
                AND ((e.reported_at >= :start AND e.reported_at < :end)
                     OR (e.status NOT IN ('cancelled', 'closed', 'evaluated')
                         AND (e.closed_at IS NULL OR e.closed_at > :asof)))
              ORDER BY {order} LIMIT :limit) k ON k.id = e.id
        ORDER BY {order}"""
    params = _scoped(scope, {**window.params(), "within": within, "limit": limit})
    return [tuple(r) for r in _all(bind, sql, params)]


def events_after(
    bind: Bind, scope: Scope, *, rev: int, within: str, limit: int = 2000
) -> list[tuple[Any, ...]]:
    """Events inserted or changed after cursor ``rev``, oldest change first."""
    sql = f"""{_EVENT_SELECT}
        WHERE e.rev > :rev AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")}
        ORDER BY e.rev LIMIT :limit"""
    params = _scoped(scope, {"rev": rev, "within": within, "limit": limit})
    return [tuple(r) for r in _all(bind, sql, params)]


def latest_changes(
    bind: Bind, scope: Scope, *, within: str, limit: int = 15
) -> list[dict[str, Any]]:
    """The most recently inserted or changed events, newest first, for the live feed."""
    sql = f"""
        SELECT e.id, e.code, e.status, e.category_code, c.name AS category, c.name_en AS category_en,
               e.reported_at, e.due_at, u.name AS unit_name, e.rev
        FROM events e JOIN event_categories c ON c.code = e.category_code
        LEFT JOIN units u ON u.id = e.unit_id
        WHERE e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")}
        ORDER BY e.rev DESC LIMIT :limit"""
    params = _scoped(scope, {"within": within, "limit": limit})
    return [dict(r._mapping) for r in _all(bind, sql, params)]


def heat_cells(
    bind: Bind,
    scope: Scope,
    *,
    within: str,
    window: Window,
    cell: float,
    steps: int,
    categories: Sequence[str] = (),
) -> list[list[float]]:
    """Events of the window binned to ``cell``-degree cells and ``steps`` time steps.

    Rows are ``[lat, lon, count, step]``: compact enough for a province-wide year, and the step
    lets playback show the heat up to a moment without asking the server again.
    """
    cat_sql = "AND left(e.category_code, 2) = ANY(:cats)" if categories else ""
    sql = f"""
        SELECT round((floor(ST_Y(e.geom) / :cell) * :cell + :cell / 2)::numeric, 5)::float AS lat,
               round((floor(ST_X(e.geom) / :cell) * :cell + :cell / 2)::numeric, 5)::float AS lon,
               count(*) AS n,
               least(:steps - 1, floor(extract(epoch FROM e.reported_at - :start) / :step_s))::int AS t
        FROM events e
        WHERE e.reported_at >= :start AND e.reported_at < least(:end, :asof)
          AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")} {cat_sql}
        GROUP BY 1, 2, 4"""
    step_s = (window.end - window.start).total_seconds() / steps
    params = _scoped(scope, {**window.params(), "within": within, "cell": cell, "steps": steps,
                             "step_s": step_s, "cats": list(categories)})  # fmt: skip
    return [[r[0], r[1], int(r[2]), int(r[3])] for r in _all(bind, sql, params)]


def categories(bind: Bind) -> list[dict[str, Any]]:
    """The event category tree, parents first."""
    sql = """SELECT code, name, coalesce(name_en, name) AS name_en, parent_code, emergency,
                    default_priority FROM event_categories ORDER BY length(code), code"""
    return [dict(r._mapping) for r in _all(bind, sql, {})]


# --- KPIs, ranking, trend ----------------------------------------------------------------------

_KPI_SQL = """
    SELECT
      count(*) FILTER (WHERE in_win) AS reported,
      count(*) FILTER (WHERE is_open) AS open,
      count(*) FILTER (WHERE is_open AND due_at < :asof) AS overdue,
      count(*) FILTER (WHERE in_win AND status <> 'cancelled') AS closable,
      count(*) FILTER (WHERE in_win AND is_closed) AS closed,
      count(*) FILTER (WHERE in_win AND (is_closed OR due_at < :asof) AND status <> 'cancelled') AS due,
      count(*) FILTER (WHERE in_win AND is_closed AND (due_at IS NULL OR closed_at <= due_at)) AS on_time,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM dispatched_at - reported_at) / 60)
        FILTER (WHERE in_win AND dispatched_at <= :asof) AS response_min,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - dispatched_at) / 3600)
        FILTER (WHERE in_win AND is_closed AND dispatched_at IS NOT NULL) AS handling_h,
      avg(satisfaction) FILTER (WHERE in_win AND is_closed AND satisfaction IS NOT NULL) AS satisfaction
    FROM (
      SELECT e.*, (e.reported_at >= :start AND e.reported_at < :end) AS in_win,
             (e.closed_at IS NOT NULL AND e.closed_at <= :asof) AS is_closed,
             (e.status <> 'cancelled' AND (e.closed_at IS NULL OR e.closed_at > :asof)) AS is_open
      FROM events e
      WHERE e.reported_at < :asof AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope}
        AND ({relevant})
    ) x"""

# The only events a window's figures can count: reported in it, open now (partial index
# ix_events_open), or closed after ``asof`` (so open then; ix_events_closed). Three index scans
# OR-ed together instead of every event of the year. An event whose status says closed but that
# has no closed_at is a data error and counts as closed.
_RELEVANT = """(e.reported_at >= :start AND e.reported_at < :end)
        OR e.status NOT IN ('cancelled', 'closed', 'evaluated') OR e.closed_at > :asof"""

_PATROL_SQL = """
    WITH g AS (SELECT count(*) AS n, min(depth) AS d FROM units
               WHERE valid_to IS NULL AND level = :grid AND unit_path @> ARRAY[:within]::varchar[]
                 AND {scope})
    SELECT g.n AS grids,
      (SELECT count(DISTINCT (p.unit_path[g.d + 1], (p.at AT TIME ZONE :tz)::date)) FROM patrols p
       WHERE p.at >= :start AND p.at < least(:end, :asof) AND p.kind = 'patrol'
         AND p.unit_path @> ARRAY[:within]::varchar[] AND {pscope}
         AND array_length(p.unit_path, 1) > g.d) AS covered
    FROM g"""


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not den else float(num or 0) / float(den)


def kpis(
    bind: Bind,
    scope: Scope,
    *,
    within: str,
    window: Window,
    tz: str = "Asia/Shanghai",
    grid_level: str = "grid",
) -> dict[str, float | int | None]:
    """The headline figures of one window (see the module docstring for each definition)."""
    params = _scoped(scope, {**window.params(), "within": within, "tz": tz, "grid": grid_level})
    e = _all(bind, _KPI_SQL.format(scope=scope.sql("e"), relevant=_RELEVANT), params)[0]
    p = _all(bind, _PATROL_SQL.format(scope=scope.sql(), pscope=scope.sql("p")), params)[0]
    days = window.days
    return {
        "reported": int(e.reported), "open": int(e.open), "overdue": int(e.overdue),
        "closure_rate": _ratio(e.closed, e.closable), "on_time_rate": _ratio(e.on_time, e.due),
        "response_min": None if e.response_min is None else float(e.response_min),
        "handling_h": None if e.handling_h is None else float(e.handling_h),
        "satisfaction": None if e.satisfaction is None else float(e.satisfaction),
        "patrol_coverage": _ratio(p.covered, (p.grids or 0) * days),
    }  # fmt: skip


def ranking(
    bind: Bind, scope: Scope, *, within: str, window: Window, limit: int = 50
) -> list[dict[str, Any]]:
    """The children of unit ``within`` ranked by open events, with closure and overdue counts."""
    sql = f"""
        WITH parent AS (SELECT depth FROM units WHERE valid_to IS NULL AND code = :within),
        ev AS (
          SELECT e.unit_path[(SELECT depth FROM parent) + 2] AS code,
                 count(*) FILTER (WHERE e.reported_at >= :start AND e.reported_at < :end) AS reported,
                 count(*) FILTER (WHERE e.status <> 'cancelled'
                                  AND (e.closed_at IS NULL OR e.closed_at > :asof)) AS open,
                 count(*) FILTER (WHERE e.status <> 'cancelled' AND e.due_at < :asof
                                  AND (e.closed_at IS NULL OR e.closed_at > :asof)) AS overdue,
                 count(*) FILTER (WHERE e.reported_at >= :start AND e.reported_at < :end
                                  AND e.closed_at <= :asof) AS closed,
                 count(*) FILTER (WHERE e.reported_at >= :start AND e.reported_at < :end
                                  AND e.status <> 'cancelled') AS closable
          FROM events e
          WHERE e.reported_at < :asof AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")}
            AND ({_RELEVANT})
          GROUP BY 1)
        SELECT u.code, u.name, u.level, u.households, coalesce(ev.reported, 0) AS reported,
               coalesce(ev.open, 0) AS open, coalesce(ev.overdue, 0) AS overdue,
               ev.closed::float / nullif(ev.closable, 0) AS closure_rate
        FROM units u LEFT JOIN ev ON ev.code = u.code
        WHERE u.valid_to IS NULL AND u.parent_code = :within AND {scope.sql("u")}
        ORDER BY open DESC, overdue DESC, reported DESC, u.code LIMIT :limit"""
    params = _scoped(scope, {**window.params(), "within": within, "limit": limit})
    return [dict(r._mapping) for r in _all(bind, sql, params)]


def trend(
    bind: Bind,
    scope: Scope,
    *,
    within: str,
    window: Window,
    bucket: str = "day",
    tz: str = "Asia/Shanghai",
) -> list[dict[str, Any]]:
    """Reported and closed counts per ``bucket`` ('hour' or 'day', local time) across the window."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"trend bucket must be 'hour' or 'day', not {bucket!r}")
    sql = f"""
        WITH b AS (SELECT generate_series(date_trunc(:bucket, :start AT TIME ZONE :tz),
                                          (:end AT TIME ZONE :tz) - interval '1 second',
                                          ('1 ' || :bucket)::interval) AS t),
        rep AS (SELECT date_trunc(:bucket, e.reported_at AT TIME ZONE :tz) AS t, count(*) AS n
                FROM events e WHERE e.reported_at >= :start AND e.reported_at < least(:end, :asof)
                  AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")} GROUP BY 1),
        clo AS (SELECT date_trunc(:bucket, e.closed_at AT TIME ZONE :tz) AS t, count(*) AS n
                FROM events e WHERE e.closed_at >= :start AND e.closed_at < least(:end, :asof)
                  AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")} GROUP BY 1)
        SELECT b.t, coalesce(rep.n, 0) AS reported, coalesce(clo.n, 0) AS closed
        FROM b LEFT JOIN rep USING (t) LEFT JOIN clo USING (t) ORDER BY b.t"""
    params = _scoped(scope, {**window.params(), "within": within, "bucket": bucket, "tz": tz})
    return [dict(r._mapping) for r in _all(bind, sql, params)]


# --- responders, wall-mode scenes, tiles -------------------------------------------------------


def responders(bind: Bind, scope: Scope, *, within: str) -> list[dict[str, Any]]:
    """Responders with position and status, and the open event each one is dispatched to."""
    sql = f"""
        SELECT r.id, r.code, r.name, r.type, r.status,
               round(ST_X(r.geom)::numeric, 5)::float AS lon, round(ST_Y(r.geom)::numeric, 5)::float AS lat,
               extract(epoch FROM r.position_at)::bigint AS at,
               ev.id AS event_id, ev.lon AS event_lon, ev.lat AS event_lat
        FROM responders r
        LEFT JOIN LATERAL (
          SELECT e.id, ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat FROM events e
          WHERE e.responder_id = r.id AND e.status NOT IN ('cancelled', 'closed', 'evaluated')
          ORDER BY e.dispatched_at DESC NULLS LAST LIMIT 1) ev ON TRUE
        WHERE r.geom IS NOT NULL AND (r.unit_path IS NULL OR r.unit_path @> ARRAY[:within]::varchar[])
          AND {scope.sql("r")}
        ORDER BY r.code"""
    return [dict(r._mapping) for r in _all(bind, sql, _scoped(scope, {"within": within}))]


def hottest_child(bind: Bind, scope: Scope, *, within: str, window: Window) -> str | None:
    """The child unit of ``within`` with most events reported in the window (wall-mode scene)."""
    rows = ranking(bind, scope, within=within, window=window, limit=1000)
    rows = [r for r in rows if r["reported"]]
    return max(rows, key=lambda r: (r["reported"], r["code"]))["code"] if rows else None


def building_tile(bind: Bind, scope: Scope, *, z: int, x: int, y: int) -> bytes:
    """Buildings of web-mercator tile z/x/y as a Mapbox Vector Tile (layer ``buildings``)."""
    sql = f"""
        WITH env AS (SELECT ST_TileEnvelope(:z, :x, :y) AS t),
        b AS (
          SELECT ST_AsMVTGeom(ST_Transform(bl.geom, 3857), env.t, 4096, 16, true) AS g,
                 bl.households AS hh, coalesce(bl.floors, 0) AS fl, bl.code
          FROM buildings bl, env
          WHERE bl.geom && ST_Transform(env.t, 4490) AND {scope.sql("bl")})
        SELECT ST_AsMVT(b, 'buildings', 4096, 'g') FROM b WHERE g IS NOT NULL"""
    rows = _all(bind, sql, _scoped(scope, {"z": z, "x": x, "y": y}))
    return bytes(rows[0][0] or b"")
