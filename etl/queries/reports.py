"""Per-grid coverage reports (网格工作报表): one row per grid, subtotals for every ancestor.

:func:`coverage_report` reads one unit and one period and returns a :class:`Report`. Rows are the
finest level (``grid``) and one subtotal per ancestor unit inside the chosen one (community,
township, …, then the unit itself as the total); the tree may have any depth because membership
is ``unit_path`` containment, never a fixed list of levels. Subtotals of counts are recounted
directly (a staff member or event registered at a community belongs to its subtotal but to no
grid); medians are medians of the subtotal's own events, not medians of medians.

Definitions, for the period ``[start, end)`` seen at ``asof``; ``hi = min(end, asof)``:

* households/residents/buildings: the units' own figures, summed over the grids for subtotals;
  ``band``: below/within/above ``settings.bands[level]`` (blank when the level has no band).
* staff by role (grid_chief, full_time, part_time, auxiliary) registered in the unit or below;
  ``hh_per_ft``: households per full-time grid worker.
* ``patrol_cov``: days with at least one patrol (``patrols.kind = 'patrol'``) / days in
  ``[start, hi)``, against the rule of one patrol a day (蓬莱); for subtotals the mean over grids
  (covered grid-days / grid-days). ``visits``: check-ins of kind ``'visit'``.
* ``reported``: events reported in the period. ``overdue``: of those, not cancelled and either
  still open past ``due_at`` at ``asof`` or closed after ``due_at``.
* CJ/T 292 from ``event_history`` (the definitions of :func:`geo.workflow.closure_stats`):
  ``filed`` 立案, ``should`` 应结案, ``closed`` 结案, ``ontime`` 按期结案, ``close_rt`` 结案率 =
  closed / should, ``ontime_rt`` 按期结案率 = ontime / should; ``returns`` 退回 and ``escal``
  上报上级 are transitions in the period.
* ``resp_min``: median minutes reported → dispatched; ``handl_h``: median hours dispatched →
  handled (report-back, else closure); ``satisf``: mean 1–5 evaluation; all over events reported
  in the period. ``top_cat``: the three most reported categories.
* Hot spots (grid rows): Getis–Ord Gi* of ``reported`` (``gi_z``, ``gi_p``, ``gi_class``) and
  ``kde``: mean kernel density of the period's events over the grid (events per km²).

Column keys are at most 10 ASCII bytes so the same names serve Shapefile fields;
:data:`COLUMNS` gives each its Chinese and English header and meaning.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from etl.queries import Scope
from etl.settings import DEFAULT_BANDS

Bind = Engine | Connection


class ReportError(ValueError):
    """A report was asked for something that does not exist or does not parse."""


class UnknownUnit(ReportError):
    """No current unit has the code (or it is outside the asker's scope)."""


class BadPeriod(ReportError):
    """The period text is not YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD."""


@dataclass(frozen=True)
class Column:
    key: str  # <= 10 ASCII bytes: also the Shapefile field name
    zh: str
    en: str
    meaning: str
    kind: str = "int"  # int | float | pct | text


COLUMNS: tuple[Column, ...] = (
    Column("code", "编码", "Code", "unit code", "text"),
    Column("name", "名称", "Name", "unit name", "text"),
    Column(
        "level", "层级", "Level", "level key of the unit (grid, community, township, …)", "text"
    ),
    Column("row_kind", "行类型", "Row", "grid | subtotal | total", "text"),
    Column("parent", "上级编码", "Parent", "code of the parent unit", "text"),
    Column("grids", "网格数", "Grids", "grids in the row"),
    Column("hh", "户数", "Households", "households"),
    Column("res", "人口", "Residents", "residents"),
    Column("bld", "楼栋数", "Buildings", "buildings"),
    Column(
        "band", "规模状态", "Size band", "households below/within/above the level's band", "text"
    ),
    Column("chief", "网格长", "Grid chiefs", "staff with role grid_chief"),
    Column("ft", "专职网格员", "Full-time", "staff with role full_time"),
    Column("pt", "兼职网格员", "Part-time", "staff with role part_time"),
    Column("aux", "网格辅助员", "Auxiliaries", "staff with role auxiliary"),
    Column("hh_per_ft", "户/专职", "HH per FT", "households per full-time worker", "float"),
    Column("patrol_d", "巡查天数", "Patrol days", "grid-days with at least one patrol"),
    Column("days", "统计天数", "Days", "days in the period up to asof (per grid)"),
    Column("patrol_cov", "巡查覆盖率", "Patrol cover", "patrol days / (grids x days)", "pct"),
    Column("visits", "走访次数", "Visits", "visit check-ins in the period"),
    Column("reported", "上报事件", "Reported", "events reported in the period"),
    Column("filed", "立案数", "Filed", "CJ/T 292 立案: first filed in the period"),
    Column("should", "应结案数", "Due", "CJ/T 292 应结案: due or closed in the period"),
    Column("closed", "结案数", "Closed", "CJ/T 292 结案: should-close events closed in the period"),
    Column("ontime", "按期结案数", "On time", "CJ/T 292 按期结案: closed by the deadline"),
    Column("overdue", "超期事件", "Overdue", "reported events open past due_at or closed late"),
    Column("close_rt", "结案率", "Closure rate", "closed / should", "pct"),
    Column("ontime_rt", "按期结案率", "On-time rate", "ontime / should", "pct"),
    Column(
        "resp_min", "响应时长(分)", "Response (min)", "median minutes reported→dispatched", "float"
    ),
    Column("handl_h", "处置时长(时)", "Handling (h)", "median hours dispatched→handled", "float"),
    Column("satisf", "满意度", "Satisfaction", "mean 1–5 evaluation", "float"),
    Column("returns", "退回次数", "Returns", "return transitions in the period"),
    Column("escal", "上报上级", "Escalations", "escalate transitions in the period"),
    Column("top_cat", "主要类别", "Top categories", "three most reported categories", "text"),
    Column("gi_z", "Gi*得分", "Gi* z", "Getis–Ord Gi* z-score of reported events", "float"),
    Column("gi_p", "Gi*显著性", "Gi* p", "two-sided p-value of gi_z", "float"),
    Column("gi_class", "热点分类", "Hot spot", "hot/cold at 99/95/90 % or not significant", "text"),
    Column("kde", "核密度", "Density", "mean kernel density, events per km²", "float"),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
ROLES = ("grid_chief", "full_time", "part_time", "auxiliary")
_ROLE_COL = dict(zip(ROLES, ("chief", "ft", "pt", "aux"), strict=True))
BAND_TEXT = {"below": ("偏小", "below"), "within": ("达标", "within"), "above": ("偏大", "above")}
CLASS_TEXT = {
    "hot_99": ("热点99%", "hot 99%"), "hot_95": ("热点95%", "hot 95%"),
    "hot_90": ("热点90%", "hot 90%"), "not_significant": ("不显著", "not significant"),
    "cold_90": ("冷点90%", "cold 90%"), "cold_95": ("冷点95%", "cold 95%"),
    "cold_99": ("冷点99%", "cold 99%"),
}  # fmt: skip


# --- period ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Local calendar days ``[start, end)``; ``label`` is the text it was parsed from."""

    start: date
    end: date
    label: str

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        zone = ZoneInfo(tz)
        return (
            datetime.combine(self.start, time(), zone),
            datetime.combine(self.end, time(), zone),
        )


_YEAR, _MONTH, _DAY = r"(\d{4})", r"(\d{4})-(\d{1,2})", r"(\d{4})-(\d{1,2})-(\d{1,2})"


def parse_period(value: str) -> Period:
    """``2026``, ``2026-10``, ``2026-10-05`` or ``2026-10-01..2026-10-15`` (both ends included)."""
    s = value.strip()
    try:
        if ".." in s:
            a, b = (_parse_day(p) for p in s.split("..", 1))
            if b < a:
                raise BadPeriod(f"period {value!r}: end {b} is before start {a}")
            return Period(a, b + timedelta(days=1), s)
        if re.fullmatch(_YEAR, s):
            return Period(date(int(s), 1, 1), date(int(s) + 1, 1, 1), s)
        if m := re.fullmatch(_MONTH, s):
            y, mo = int(m[1]), int(m[2])
            return Period(
                date(y, mo, 1), date(y, mo, calendar.monthrange(y, mo)[1]) + timedelta(1), s
            )
        day = _parse_day(s)
        return Period(day, day + timedelta(days=1), s)
    except ValueError as exc:
        if isinstance(exc, BadPeriod):
            raise
        raise BadPeriod(
            f"period {value!r} is not YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD ({exc})"
        ) from None


def _parse_day(s: str) -> date:
    m = re.fullmatch(_DAY, s.strip())
    if not m:
        raise ValueError(f"{s!r} is not a YYYY-MM-DD date")
    return date(int(m[1]), int(m[2]), int(m[3]))


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Report:
    """One coverage report: rows in tree order (children before their subtotal), the unit
    geometries (EPSG:4490, aligned with ``rows``), category totals and the daily trend."""

    unit_code: str
    unit_name: str
    unit_level: str
    period: Period
    start: datetime
    end: datetime
    asof: datetime
    rows: pd.DataFrame
    geometry: gpd.GeoSeries
    categories: pd.DataFrame  # code, name, name_en, n
    daily: pd.DataFrame  # day, reported, closed
    level_names: dict[str, tuple[str, str]]

    @property
    def grids(self) -> pd.DataFrame:
        return self.rows[self.rows["row_kind"] == "grid"]

    @property
    def total(self) -> pd.Series:
        return self.rows.iloc[-1]

    def frame(self) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(self.rows, geometry=self.geometry, crs=4490)


@dataclass(frozen=True)
class _Ctx:
    root: str
    lo: datetime
    hi: datetime
    asof: datetime
    tz: str
    scope: Scope

    def params(self, **extra: object) -> dict[str, object]:
        base = {"root": self.root, "lo": self.lo, "hi": self.hi, "asof": self.asof, "tz": self.tz}
        return {**base, **self.scope.params(), **extra}


def coverage_report(
    bind: Bind,
    scope: Scope,
    *,
    unit: str,
    period: Period | str,
    asof: datetime | None = None,
    tz: str = "Asia/Shanghai",
    bands: Mapping[str, tuple[int, int]] = DEFAULT_BANDS,
    grid_level: str = "grid",
    hotspots: bool = True,
    bandwidth: float = 800.0,
) -> Report:
    """The coverage report of ``unit`` over ``period`` (see the module docstring)."""
    per = parse_period(period) if isinstance(period, str) else period
    start, end = per.bounds(tz)
    asof = asof or datetime.now(ZoneInfo(tz))
    ctx = _Ctx(unit, start, max(start, min(end, asof)), asof, tz, scope)
    with _connect(bind) as conn:
        units = _units(conn, ctx, grid_level)
        rows = _assemble(conn, ctx, units, bands, grid_level)
        rows = rows.assign(gi_z=np.nan, gi_p=np.nan, gi_class=None, kde=np.nan)
        if hotspots:
            rows = _with_hotspots(conn, ctx, rows, bandwidth)
        root = units[units["code"] == unit].iloc[0]
        return Report(
            unit_code=unit, unit_name=root["name"], unit_level=root["level"], period=per,
            start=start, end=end, asof=asof, rows=rows[[*COLUMN_KEYS, "top_cat_en"]].reset_index(drop=True),
            geometry=gpd.GeoSeries(units.set_index("code").loc[rows["code"], "geometry"].values,
                                   crs=4490),
            categories=_categories(conn, ctx), daily=_daily(conn, ctx),
            level_names=_level_names(conn),
        )  # fmt: skip


class _connect:
    def __init__(self, bind: Bind) -> None:
        self.bind, self.conn = bind, None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        self.conn = self.bind.connect()  # type: ignore[assignment]
        return self.conn  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()  # type: ignore[unreachable]


def _frame(conn: Connection, sql: str, params: Mapping[str, object]) -> pd.DataFrame:
    result = conn.execute(text(sql), dict(params))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


# --- units -------------------------------------------------------------------------------------

_UNITS_SQL = """
    WITH root AS (SELECT code FROM units WHERE valid_to IS NULL AND code = :root AND {scope}),
    g AS (SELECT unit_path FROM units WHERE valid_to IS NULL AND level = :grid
            AND unit_path @> ARRAY[:root]::varchar[] AND {scope}),
    codes AS (SELECT DISTINCT c.code FROM g CROSS JOIN LATERAL unnest(g.unit_path) WITH ORDINALITY c(code, i)
              WHERE c.i >= array_position(g.unit_path, :root)
              UNION SELECT code FROM root)
    SELECT u.code, u.name, u.level, u.parent_code AS parent, u.unit_path, u.households AS hh,
           u.residents AS res, u.buildings AS bld, ST_AsBinary(u.geom) AS wkb
    FROM units u JOIN codes USING (code) WHERE u.valid_to IS NULL AND {scope}"""


def _units(conn: Connection, ctx: _Ctx, grid_level: str) -> pd.DataFrame:
    sql = _UNITS_SQL.format(scope=ctx.scope.sql())
    units = _frame(conn, sql, ctx.params(grid=grid_level))
    if not (units["code"] == ctx.root).any():
        raise UnknownUnit(f"unit {ctx.root!r}: no current unit with this code in your scope")
    units["geometry"] = shapely.from_wkb(units.pop("wkb").map(bytes))
    units["is_grid"] = (units["level"] == grid_level) | (len(units) == 1)
    return units


def _tree_order(units: pd.DataFrame, root: str) -> pd.Series:
    """Sort keys: the path from the root, subtotals after all their descendants."""

    def key(row: pd.Series) -> str:
        path = list(row["unit_path"])
        below = path[path.index(root) :] if root in path else [row["code"]]
        return "/".join(below) + ("" if row["is_grid"] else "/~")

    return units.apply(key, axis=1)


# --- member tallies: one generic pattern over unit_path ------------------------------------------

_MEMBER = "CROSS JOIN LATERAL unnest({a}.unit_path) AS m(code) JOIN ru ON ru.code = m.code"
_RU = "WITH ru AS (SELECT unnest(CAST(:codes AS varchar[])) AS code)"

_STAFF_SQL = f"""{_RU}
    SELECT m.code, s.role, count(*) AS n FROM staff s {_MEMBER.format(a="s")}
    WHERE s.unit_path @> ARRAY[:root]::varchar[] AND {{scope}} GROUP BY 1, 2"""

_PATROL_SQL = f"""{_RU}
    SELECT m.code,
           count(DISTINCT (p.at AT TIME ZONE :tz)::date) FILTER (WHERE p.kind = 'patrol') AS patrol_d,
           count(*) FILTER (WHERE p.kind = 'visit') AS visits
    FROM patrols p {_MEMBER.format(a="p")}
    WHERE p.at >= :lo AND p.at < :hi AND p.unit_path @> ARRAY[:root]::varchar[] AND {{scope}}
    GROUP BY 1"""

_EVENT_SQL = f"""{_RU}
    SELECT m.code, count(*) AS reported,
      count(*) FILTER (WHERE e.status <> 'cancelled' AND e.due_at IS NOT NULL AND (
          (e.closed_at <= :asof AND e.closed_at > e.due_at)
          OR ((e.closed_at IS NULL OR e.closed_at > :asof) AND e.due_at < :asof))) AS overdue,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.dispatched_at - e.reported_at) / 60)
        FILTER (WHERE e.dispatched_at <= :asof) AS resp_min,
      percentile_cont(0.5) WITHIN GROUP (
          ORDER BY extract(epoch FROM coalesce(e.handled_at, e.closed_at) - e.dispatched_at) / 3600)
        FILTER (WHERE coalesce(e.handled_at, e.closed_at) <= :asof) AS handl_h,
      avg(e.satisfaction) AS satisf
    FROM events e {_MEMBER.format(a="e")}
    WHERE e.reported_at >= :lo AND e.reported_at < :hi AND e.unit_path @> ARRAY[:root]::varchar[]
      AND {{scope}}
    GROUP BY 1"""

# CJ/T 292 per geo.workflow.closure_stats: first 'file' and first 'close' of each history,
# the deadline from events.due_at
_CJT292_SQL = f"""{_RU},
    h AS (SELECT h.event_id,
            min(h.at) FILTER (WHERE h.action = 'file') AS filed_at,
            min(h.at) FILTER (WHERE h.action = 'close') AS closed_at,
            count(*) FILTER (WHERE h.action = 'return' AND h.at >= :lo AND h.at < :hi) AS ret,
            count(*) FILTER (WHERE h.action = 'escalate' AND h.at >= :lo AND h.at < :hi) AS esc
          FROM event_history h JOIN events e ON e.id = h.event_id
          WHERE e.unit_path @> ARRAY[:root]::varchar[] AND {{scope}} AND h.at < :hi
          GROUP BY h.event_id),
    x AS (SELECT e.unit_path, h.*, e.due_at,
            coalesce(h.closed_at >= :lo AND h.closed_at < :hi, false) AS closed_in,
            coalesce(e.due_at >= :lo AND e.due_at < :hi AND NOT coalesce(h.closed_at < :lo, false),
                     false) AS due_in
          FROM h JOIN events e ON e.id = h.event_id)
    SELECT m.code,
      count(*) FILTER (WHERE x.filed_at >= :lo AND x.filed_at < :hi) AS filed,
      count(*) FILTER (WHERE x.filed_at IS NOT NULL AND (x.due_in OR x.closed_in)) AS should,
      count(*) FILTER (WHERE x.filed_at IS NOT NULL AND x.closed_in) AS closed,
      count(*) FILTER (WHERE x.filed_at IS NOT NULL AND x.closed_in AND x.closed_at <= x.due_at) AS ontime,
      sum(x.ret) AS returns, sum(x.esc) AS escal
    FROM x {_MEMBER.format(a="x")}
    GROUP BY 1"""

_TOPCAT_SQL = f"""{_RU}
    SELECT m.code, e.category_code AS cat, c.name, coalesce(c.name_en, c.name) AS name_en, count(*) AS n
    FROM events e JOIN event_categories c ON c.code = e.category_code {_MEMBER.format(a="e")}
    WHERE e.reported_at >= :lo AND e.reported_at < :hi AND e.unit_path @> ARRAY[:root]::varchar[]
      AND {{scope}}
    GROUP BY 1, 2, 3, 4"""


def _tally(conn: Connection, ctx: _Ctx, sql: str, alias: str, codes: list[str]) -> pd.DataFrame:
    frame = _frame(conn, sql.format(scope=ctx.scope.sql(alias)), ctx.params(codes=codes))
    return frame.set_index("code")


def _staff(conn: Connection, ctx: _Ctx, codes: list[str]) -> pd.DataFrame:
    long = _tally(conn, ctx, _STAFF_SQL, "s", codes).reset_index()
    wide = long.pivot_table(index="code", columns="role", values="n", aggfunc="sum", fill_value=0)
    return wide.reindex(columns=list(ROLES), fill_value=0).rename(columns=_ROLE_COL)


def _top_categories(conn: Connection, ctx: _Ctx, codes: list[str], k: int = 3) -> pd.DataFrame:
    frame = _tally(conn, ctx, _TOPCAT_SQL, "e", codes).reset_index()
    frame = frame.sort_values(["code", "n", "cat"], ascending=[True, False, True])
    top = frame.groupby("code").head(k)
    return pd.DataFrame({
        "top_cat": top.assign(t=top["name"] + "(" + top["n"].astype(str) + ")")
        .groupby("code")["t"].agg("、".join),
        "top_cat_en": top.assign(t=top["name_en"] + " (" + top["n"].astype(str) + ")")
        .groupby("code")["t"].agg("; ".join),
    })  # fmt: skip


def _assemble(
    conn: Connection,
    ctx: _Ctx,
    units: pd.DataFrame,
    bands: Mapping[str, tuple[int, int]],
    grid_level: str,
) -> pd.DataFrame:
    codes = units["code"].tolist()
    rows = units.set_index("code", drop=False)
    tallies = [
        _staff(conn, ctx, codes),
        _tally(conn, ctx, _PATROL_SQL, "p", codes),
        _tally(conn, ctx, _EVENT_SQL, "e", codes),
        _tally(conn, ctx, _CJT292_SQL, "e", codes),
        _top_categories(conn, ctx, codes),
    ]
    for t in tallies:
        rows = rows.join(t)
    rows = _subtotal_sums(rows, ctx)
    rows = _rates(rows, ctx, bands)
    rows["row_kind"] = np.where(rows["is_grid"], "grid",
                                np.where(rows["code"] == ctx.root, "total", "subtotal"))  # fmt: skip
    rows["sort"] = _tree_order(rows, ctx.root)
    return rows.sort_values("sort").reset_index(drop=True)


_COUNTS = ("chief", "ft", "pt", "aux", "visits", "reported", "overdue", "filed", "should", "closed",
           "ontime", "returns", "escal")  # fmt: skip


def _subtotal_sums(rows: pd.DataFrame, ctx: _Ctx) -> pd.DataFrame:
    """Grid-additive figures (households, patrol grid-days, grid count) summed up the tree."""
    rows = rows.copy()
    for col in _COUNTS + ("patrol_d",):
        rows[col] = pd.to_numeric(rows.get(col), errors="coerce").fillna(0).astype(int)
    grids = rows[rows["is_grid"]]
    member = [(a, g) for g, path in zip(grids["code"], grids["unit_path"], strict=True)
              for a in path if a in rows.index]  # fmt: skip
    link = pd.DataFrame(member, columns=["anc", "grid"])
    add = grids.set_index("code")[["hh", "res", "bld", "patrol_d"]].assign(grids=1)
    sums = link.join(add, on="grid").groupby("anc")[["hh", "res", "bld", "patrol_d", "grids"]].sum()
    rows[["hh", "res", "bld", "patrol_d", "grids"]] = sums.reindex(rows.index).fillna(0).astype(int)
    return rows


def _rates(rows: pd.DataFrame, ctx: _Ctx, bands: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    days = _local_days(ctx)
    rows["days"] = days
    rows["patrol_cov"] = _div(rows["patrol_d"], rows["grids"] * days)
    rows["hh_per_ft"] = _div(rows["hh"], rows["ft"])
    rows["close_rt"] = _div(rows["closed"], rows["should"])
    rows["ontime_rt"] = _div(rows["ontime"], rows["should"])
    for col in ("resp_min", "handl_h", "satisf"):
        rows[col] = pd.to_numeric(rows.get(col), errors="coerce").astype(float)
    rows["band"] = [_band(hh, bands.get(level)) for hh, level in zip(rows["hh"], rows["level"],
                                                                      strict=True)]  # fmt: skip
    return rows


def _div(num: pd.Series, den: pd.Series) -> pd.Series:
    den = den.astype(float)
    return (num.astype(float) / den.where(den > 0)).astype(float)


def _band(hh: int, band: tuple[int, int] | None) -> str | None:
    if band is None:
        return None
    lo, hi = band
    return "below" if hh < lo else "above" if hh > hi else "within"


def _local_days(ctx: _Ctx) -> int:
    """Calendar days (local) that ``[lo, hi)`` touches; a part day counts as a day."""
    if ctx.hi <= ctx.lo:
        return 0
    return max(1, math.ceil((ctx.hi - ctx.lo) / timedelta(days=1)))


# --- hot spots -----------------------------------------------------------------------------------

_POINTS_SQL = """
    SELECT ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat FROM events e
    WHERE e.reported_at >= :lo AND e.reported_at < :hi AND e.unit_path @> ARRAY[:root]::varchar[]
      AND {scope}"""


def event_points(conn: Connection, ctx: _Ctx) -> gpd.GeoSeries:
    pts = _frame(conn, _POINTS_SQL.format(scope=ctx.scope.sql("e")), ctx.params())
    return gpd.GeoSeries(gpd.points_from_xy(pts["lon"], pts["lat"]), crs=4490)


def _with_hotspots(
    conn: Connection, ctx: _Ctx, rows: pd.DataFrame, bandwidth: float
) -> pd.DataFrame:
    from geo.hotspots import getis_ord, kernel_density, zonal_mean

    rows = rows.copy()
    grid_rows = rows.index[rows["row_kind"] == "grid"]
    grids = gpd.GeoDataFrame(rows.loc[grid_rows, ["reported"]], geometry=rows.loc[grid_rows, "geometry"].values, crs=4490)  # fmt: skip
    if len(grids) >= 3:
        gi = getis_ord(grids, value="reported")
        rows.loc[grid_rows, ["gi_z", "gi_p", "gi_class"]] = gi[
            ["gi_z", "gi_p", "gi_class"]
        ].to_numpy()
    if len(grids):
        surface = kernel_density(event_points(conn, ctx), bandwidth=bandwidth,
                                 cell=bandwidth / 4, extent=grids.geometry)  # fmt: skip
        rows.loc[grid_rows, "kde"] = zonal_mean(surface, grids.geometry)
    return rows


def hotspot_layer(
    bind: Bind,
    scope: Scope,
    *,
    unit: str,
    period: Period | str,
    asof: datetime | None = None,
    tz: str = "Asia/Shanghai",
    bandwidth: float = 800.0,
    density_cells: bool = False,
    tolerance: float = 0.0001,
) -> dict[str, Any]:
    """Grids of ``unit`` with their Gi* class as a GeoJSON FeatureCollection for the map.

    Properties: code, name, n (events), gi_z, gi_p, gi_class, kde. With ``density_cells`` the
    collection also carries ``"density"``: a FeatureCollection of kernel-density cells (the top
    80 % of the non-zero range), property ``density`` in events per km².
    """
    from geo.hotspots import kernel_density, surface_cells

    report = coverage_report(bind, scope, unit=unit, period=period, asof=asof, tz=tz,
                             bandwidth=bandwidth)  # fmt: skip
    grids = report.frame()[report.rows["row_kind"] == "grid"]
    frame = grids[["code", "name", "reported", "gi_z", "gi_p", "gi_class", "kde", "geometry"]]
    frame = frame.rename(columns={"reported": "n"})
    frame = frame.set_geometry(frame.geometry.simplify(tolerance, preserve_topology=True))
    layer = _geojson(frame)
    if density_cells and len(grids):
        start, _ = report.period.bounds(tz)
        ctx = _Ctx(unit, start, max(start, min(report.end, report.asof)), report.asof, tz, scope)
        with _connect(bind) as conn:
            surface = kernel_density(event_points(conn, ctx), bandwidth=bandwidth,
                                     cell=bandwidth / 4, extent=grids.geometry)  # fmt: skip
        peak = float(surface.values.max())
        layer["density"] = _geojson(surface_cells(surface, min_value=0.2 * peak)) if peak else {
            "type": "FeatureCollection", "features": []}  # fmt: skip
    return layer


def _geojson(frame: gpd.GeoDataFrame) -> dict[str, Any]:
    import json

    return json.loads(frame.to_json(na="null", drop_id=True))


# --- charts' data ------------------------------------------------------------------------------


def _categories(conn: Connection, ctx: _Ctx) -> pd.DataFrame:
    sql = f"""SELECT e.category_code AS code, c.name, coalesce(c.name_en, c.name) AS name_en,
                     count(*) AS n
              FROM events e JOIN event_categories c ON c.code = e.category_code
              WHERE e.reported_at >= :lo AND e.reported_at < :hi
                AND e.unit_path @> ARRAY[:root]::varchar[] AND {ctx.scope.sql("e")}
              GROUP BY 1, 2, 3 ORDER BY n DESC, code"""
    return _frame(conn, sql, ctx.params())


def _daily(conn: Connection, ctx: _Ctx) -> pd.DataFrame:
    sql = f"""
        WITH d AS (SELECT generate_series((:lo AT TIME ZONE :tz)::date,
                                          ((:hi AT TIME ZONE :tz) - interval '1 second')::date,
                                          interval '1 day')::date AS day),
        e AS (SELECT * FROM events e WHERE e.unit_path @> ARRAY[:root]::varchar[] AND {ctx.scope.sql("e")}),
        r AS (SELECT (reported_at AT TIME ZONE :tz)::date AS day, count(*) AS n FROM e
              WHERE reported_at >= :lo AND reported_at < :hi GROUP BY 1),
        c AS (SELECT (closed_at AT TIME ZONE :tz)::date AS day, count(*) AS n FROM e
              WHERE closed_at >= :lo AND closed_at < :hi GROUP BY 1)
        SELECT d.day, coalesce(r.n, 0) AS reported, coalesce(c.n, 0) AS closed
        FROM d LEFT JOIN r USING (day) LEFT JOIN c USING (day) ORDER BY d.day"""
    if ctx.hi <= ctx.lo:
        return pd.DataFrame({"day": [], "reported": [], "closed": []})
    return _frame(conn, sql, ctx.params())


def _level_names(conn: Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute(text("SELECT key, name, name_en FROM levels ORDER BY rank")).all()
    return {r.key: (r.name, r.name_en) for r in rows}


def units_for_picker(
    bind: Bind, scope: Scope, *, max_level_rank: int | None = None
) -> list[dict[str, Any]]:
    """Current units a report can be asked for (every level above the grid), in tree order."""
    sql = f"""SELECT u.code, u.name, u.level, u.depth FROM units u JOIN levels l ON l.key = u.level
              WHERE u.valid_to IS NULL AND {scope.sql("u")}
                AND l.rank < coalesce(:rank, (SELECT rank FROM levels WHERE key = 'grid'), 99)
              ORDER BY u.unit_path"""
    with _connect(bind) as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), {"rank": max_level_rank,
                                                                   **scope.params()}).all()]  # fmt: skip


def labels(keys: Sequence[str], lang: str) -> list[str]:
    """Column headers in ``lang`` ('zh' or 'en')."""
    return [getattr(COLUMN_BY_KEY[k], "zh" if lang == "zh" else "en") for k in keys]


# --- analysis reads (notebooks) --------------------------------------------------------------


def data_span(bind: Bind, scope: Scope, *, within: str) -> tuple[datetime | None, datetime | None]:
    """First and last ``reported_at`` of the events inside ``within``."""
    sql = f"""SELECT min(reported_at), max(reported_at) FROM events e
              WHERE e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")}"""
    with _connect(bind) as conn:
        row = conn.execute(text(sql), {"within": within, **scope.params()}).one()
    return row[0], row[1]


def unit_frame(bind: Bind, scope: Scope, *, within: str, level: str) -> gpd.GeoDataFrame:
    """Current units of ``level`` inside ``within`` (EPSG:4490), indexed by code, with their
    parent's code, households, residents, buildings and the full ``unit_path``."""
    sql = f"""SELECT code, name, level, parent_code, households, residents, buildings, unit_path,
                     ST_AsBinary(geom) AS wkb
              FROM units WHERE valid_to IS NULL AND level = :level
                AND unit_path @> ARRAY[:within]::varchar[] AND {scope.sql()} ORDER BY code"""
    with _connect(bind) as conn:
        frame = _frame(conn, sql, {"within": within, "level": level, **scope.params()})
    geoms = shapely.from_wkb(frame.pop("wkb").map(bytes)) if len(frame) else []
    return gpd.GeoDataFrame(frame, geometry=geoms, crs=4490).set_index("code", drop=False)


def grid_event_counts(
    bind: Bind,
    scope: Scope,
    *,
    within: str,
    start: datetime,
    end: datetime,
    bucket: str = "month",
    tz: str = "Asia/Shanghai",
    grid_level: str = "grid",
) -> pd.DataFrame:
    """Events reported per grid and local ``bucket`` ('day', 'week' or 'month') in
    ``[start, end)``: columns code, bucket (date), n; grids with no event are absent."""
    if bucket not in ("day", "week", "month"):
        raise ReportError(f"bucket must be day, week or month, not {bucket!r}")
    sql = f"""
        WITH g AS (SELECT code FROM units WHERE valid_to IS NULL AND level = :grid
                     AND unit_path @> ARRAY[:within]::varchar[] AND {scope.sql()})
        SELECT g.code, date_trunc(:bucket, e.reported_at AT TIME ZONE :tz)::date AS bucket,
               count(*) AS n
        FROM events e JOIN g ON g.code = ANY(e.unit_path)
        WHERE e.reported_at >= :start AND e.reported_at < :end AND {scope.sql("e")}
        GROUP BY 1, 2 ORDER BY 2, 1"""
    params = {"within": within, "grid": grid_level, "bucket": bucket, "tz": tz, "start": start,
              "end": end, **scope.params()}  # fmt: skip
    with _connect(bind) as conn:
        return _frame(conn, sql, params)


def event_times(
    bind: Bind,
    scope: Scope,
    *,
    within: str,
    start: datetime,
    end: datetime,
    level: str = "township",
) -> pd.DataFrame:
    """One row per event reported in ``[start, end)`` inside ``within``: its unit at ``level``
    (code and name), category and top category (code, name, name_en, emergency), channel,
    priority, status, ``response_min`` (reported → dispatched), ``handling_h`` (dispatched →
    handled, else closed), ``closed_h`` (reported → closed), ``on_time`` (closed by due_at;
    None while open or without a deadline)."""
    sql = f"""
        SELECT e.id, u.code AS unit_code, u.name AS unit_name, e.category_code,
               c.name AS category, coalesce(c.name_en, c.name) AS category_en, c.emergency,
               coalesce(c.parent_code, c.code) AS top_code, p.name AS top_category,
               coalesce(p.name_en, p.name) AS top_category_en,
               e.channel, e.priority, e.status, e.reported_at,
               extract(epoch FROM e.dispatched_at - e.reported_at) / 60 AS response_min,
               extract(epoch FROM coalesce(e.handled_at, e.closed_at) - e.dispatched_at) / 3600
                 AS handling_h,
               extract(epoch FROM e.closed_at - e.reported_at) / 3600 AS closed_h,
               CASE WHEN e.closed_at IS NULL OR e.due_at IS NULL THEN NULL
                    ELSE e.closed_at <= e.due_at END AS on_time
        FROM events e
        JOIN event_categories c ON c.code = e.category_code
        LEFT JOIN event_categories p ON p.code = coalesce(c.parent_code, c.code)
        LEFT JOIN units u ON u.valid_to IS NULL AND u.level = :level AND u.code = ANY(e.unit_path)
        WHERE e.reported_at >= :start AND e.reported_at < :end
          AND e.unit_path @> ARRAY[:within]::varchar[] AND {scope.sql("e")}
        ORDER BY e.reported_at"""
    params = {"within": within, "level": level, "start": start, "end": end, **scope.params()}
    with _connect(bind) as conn:
        frame = _frame(conn, sql, params)
    for col in ("response_min", "handling_h", "closed_h"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame
