"""A deterministic, plausible demo county built around real codes, names and outline.

Real: the county outline and its townships/streets and villages/communities (codes, names).
Synthetic, from a seed: every internal boundary, the grids and micro-grids, buildings,
households, roads, staff, responders, patrol check-ins and a year of events.

How the territory is built (all geometry in EPSG:4545, metres; output in EPSG:4490):

* Urban cores are square street lattices: one around the county seat for the streets 街道 and
  the seat town's communities, one small lattice per other town for its 社区. A lattice block
  is one urban micro-grid, so urban units are bounded by streets (以街巷定界). Blocks are split
  into townships, communities and grids by recursive bisection along the streets.
* The rest of the county is tiled by Voronoi cells (``shapely.voronoi_polygons``) of seed
  points that are denser near township seats, clipped to the outline minus the lattices.
  These cells are the atoms of the rural units: townships take the cells nearest their seat
  (seats spread by k-means, the seat town at the county seat), villages, rural grids and
  micro-grids split their parent's cells by k-means. Every unit is the union of its atoms, so
  siblings share edges exactly and tile their parent (no overlaps or gaps); units are made
  contiguous by moving stray pieces to a neighbouring sibling.
* Households are planned per grid (300-500, with a few communities deliberately above 700 or
  below 200 households a grid) and split into micro-grids of 30-100; buildings are generated
  inside their micro-grid to hold exactly those households.

``scale`` multiplies households (so buildings and micro-grids) and events. The structure above
micro-grids (364 grids) and the staff, responders and patrols do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer
from scipy import sparse
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree, shortest_path
from scipy.spatial import Delaunay, cKDTree

__all__ = ["DemoCounty", "SynthError", "SynthInputError", "build_demo_county"]

STORAGE_EPSG = 4490
WORK_EPSG = 4545  # CGCS2000 / 3-degree Gauss-Kruger CM 108E: the zone of 万源市
TZ = ZoneInfo("Asia/Shanghai")
SEAT_LONLAT = (108.03, 32.07)  # 太平镇 / 古东关街道, the county seat of 万源市

TARGET_GRIDS = 364
TARGET_HOUSEHOLDS = 150_000
TARGET_EVENTS = 25_000
PATROL_DAYS = 30

_PREC = 0.01  # metres: every working coordinate sits on this grid so shared edges match exactly
_OFFSET = 8 * 3600  # Asia/Shanghai is UTC+8 all year (no daylight saving)
_WORK_PERIODS = ((8.5, 12.0), (14.0, 17.5))  # the working day the calendar module also uses
_WORK_DAY_S = int(sum(b - a for a, b in _WORK_PERIODS) * 3600)

F = NDArray[np.float64]
I = NDArray[np.int64]  # noqa: E741
B = NDArray[np.bool_]
G = NDArray[np.object_]


from geo.synth_life import events as _events  # noqa: E402
from geo.synth_life import people as _people  # noqa: E402


class SynthError(ValueError):
    """The demo county could not be built."""


class SynthInputError(SynthError):
    """An input (outline, divisions, categories, options) is missing something or malformed."""


@dataclass(frozen=True, eq=False)
class DemoCounty:
    """Everything the demo loads, in EPSG:4490 with times in Asia/Shanghai."""

    units: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    staff: pd.DataFrame
    responders: gpd.GeoDataFrame
    patrols: gpd.GeoDataFrame
    events: gpd.GeoDataFrame


def build_demo_county(
    outline: object,
    divisions: pd.DataFrame,
    categories: pd.DataFrame,
    *,
    rng: np.random.Generator | int | None = None,
    end: datetime | None = None,
    scale: float = 1.0,
) -> DemoCounty:
    """Build the demo county inside ``outline`` from the real ``divisions`` (a few seconds).

    ``outline``: a shapely (Multi)Polygon in EPSG:4490, or a GeoSeries/GeoDataFrame with a CRS.
    ``divisions``: columns code, name, parent_code, level (9-digit townships, 12-digit
    communities). ``categories``: the event category table (code, parent_code,
    default_priority, time_limit, time_unit, emergency). ``end``: the last moment of the event
    year (aware datetime; default now), floored to the hour.

    >>> import shapely, pandas as pd
    >>> square = shapely.box(108.0, 32.04, 108.06, 32.10)
    >>> divisions = pd.DataFrame({"code": ["511781001", "511781100", "511781001001",
    ...     "511781100001", "511781100201"], "name": ["古东关街道", "太平镇", "东城社区居民委员会",
    ...     "南门社区居民委员会", "花园村民委员会"], "parent_code": ["511781"] * 2 +
    ...     ["511781001", "511781100", "511781100"], "level": ["township"] * 2 + ["community"] * 3})
    >>> categories = pd.DataFrame({"code": ["01", "0101"], "name": ["矛盾纠纷", "邻里纠纷"],
    ...     "parent_code": [None, "01"], "default_priority": [3, 3], "time_limit": [None, 5],
    ...     "time_unit": [None, "work_days"], "emergency": [False, False]})
    >>> demo = build_demo_county(square, divisions, categories, rng=1, scale=0.01)
    >>> sorted(demo.units["level"].unique())
    ['community', 'county', 'grid', 'microgrid', 'township']
    """
    gen = np.random.default_rng(rng)
    streams = gen.spawn(6)
    end_ts = _end_timestamp(end)
    if not (0 < scale <= 10):
        raise SynthInputError(f"scale must be in (0, 10], got {scale!r}")
    county_m, county_code, county_name = _outline(outline)
    towns, comms = _divisions(divisions, county_code)
    cats = _categories(categories)
    plan = _plan_households(towns, comms, streams[0], scale)
    terr = _territory(county_m, towns, comms, plan, streams[1])
    units = _units_frame(terr, towns, comms, county_code, county_name)
    bld = _buildings(terr, towns, comms, county_m, streams[2])
    roads = _roads(terr, towns, comms, bld, county_m, streams[3])
    staff, responders, patrols = _people(terr, towns, bld, county_m, end_ts, streams[4])
    events = _events(terr, towns, comms, bld, cats, county_m, end_ts, scale, streams[5])
    return DemoCounty(
        units=units,
        roads=_to_storage(roads),
        buildings=_to_storage(bld.frame),
        staff=staff,
        responders=_to_storage(responders),
        patrols=_to_storage(patrols),
        events=_to_storage(events),
    )


# --- inputs -----------------------------------------------------------------------------------


def _end_timestamp(end: datetime | None) -> pd.Timestamp:
    if end is None:
        end = datetime.now(TZ)
    if end.tzinfo is None or end.utcoffset() is None:
        raise SynthInputError(f"end must be timezone-aware, got naive {end.isoformat()}")
    return pd.Timestamp(end).tz_convert(TZ).floor("h")


def _outline(outline: object) -> tuple[shapely.Geometry, str, str]:
    """The outline in working metres, plus the code/name it carries (if a frame)."""
    code = name = ""
    if isinstance(outline, gpd.GeoSeries | gpd.GeoDataFrame):
        if outline.crs is None:
            raise SynthInputError("outline has no CRS: set one (EPSG:4490) before building")
        if isinstance(outline, gpd.GeoDataFrame):
            code = str(outline["code"].iloc[0]) if "code" in outline and len(outline) else ""
            name = str(outline["name"].iloc[0]) if "name" in outline and len(outline) else ""
        geom = shapely.union_all(outline.to_crs(STORAGE_EPSG).geometry.values)
    elif isinstance(outline, shapely.Geometry):
        geom = outline
    else:
        raise SynthInputError(
            f"outline must be a shapely geometry or GeoSeries/GeoDataFrame, got {type(outline).__name__}"
        )
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise SynthInputError(f"outline must be a non-empty (Multi)Polygon, got {geom.geom_type}")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise SynthInputError(f"outline bounds {geom.bounds} are not lon/lat (EPSG:4490 expected)")
    work = shapely.make_valid(_transform(geom, STORAGE_EPSG, WORK_EPSG))
    return _snap(work), code, name


def _divisions(divisions: pd.DataFrame, county_code: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = {"code", "name", "parent_code"} - set(divisions.columns)
    if missing:
        raise SynthInputError(f"divisions lack column(s) {sorted(missing)}")
    frame = divisions.assign(
        code=divisions["code"].map(_code_text), parent_code=divisions["parent_code"].map(_code_text)
    )
    towns = frame[frame["code"].str.len() == 9].sort_values("code").reset_index(drop=True)
    comms = frame[frame["code"].str.len() == 12].sort_values("code").reset_index(drop=True)
    if towns.empty or comms.empty:
        raise SynthInputError("divisions need 9-digit townships and 12-digit communities")
    parents = towns["parent_code"].unique()
    if len(parents) != 1 or (county_code and parents[0] != county_code):
        raise SynthInputError(f"townships must share one county parent, got {sorted(parents)}")
    for row in comms.itertuples():
        if row.parent_code not in set(towns["code"]) or not row.code.startswith(row.parent_code):
            raise SynthInputError(
                f"community {row.code} {row.name}: parent {row.parent_code} is not a township"
            )
    empty = set(towns["code"]) - set(comms["parent_code"])
    if empty:
        raise SynthInputError(f"township(s) {sorted(empty)} have no community or village")
    towns = towns.assign(
        short=towns["name"].str.replace(r"(街道|街道办事处|镇|乡)$", "", regex=True),
        street=towns["code"].str[6] == "0",
    )
    if not towns["street"].any() and not (towns["code"].str[6] == "1").any():
        raise SynthInputError(
            "divisions need a street (街道) or a town (镇) to hold the county seat"
        )
    seat_town = towns.index[~towns["street"]][0] if (~towns["street"]).any() else towns.index[0]
    towns["seat_town"] = towns.index == seat_town
    town_idx = pd.Series(towns.index, index=towns["code"])
    comms = comms.assign(
        town=comms["parent_code"].map(town_idx).to_numpy(),
        urban=comms["name"].str.contains("社区") | (comms["code"].str[-3:].astype(int) < 200),
        short=comms["name"].str.replace(r"(居民委员会|民委员会|委员会)$", "", regex=True),
    )
    comms["street"] = towns["street"].to_numpy()[comms["town"]]
    comms["core"] = comms["urban"] & (
        comms["street"] | towns["seat_town"].to_numpy()[comms["town"]]
    )
    return towns, comms


def _code_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") else text


def _categories(categories: pd.DataFrame) -> pd.DataFrame:
    need = {"code", "parent_code", "default_priority", "time_limit", "time_unit", "emergency"}
    missing = need - set(categories.columns)
    if missing:
        raise SynthInputError(f"categories lack column(s) {sorted(missing)}")
    frame = categories.assign(
        code=categories["code"].map(_code_text),
        parent_code=categories["parent_code"].map(_code_text),
    )
    frame["code"] = [
        c.zfill(2 if p == "" else 4)
        for c, p in zip(frame["code"], frame["parent_code"], strict=True)
    ]
    leaves = frame[~frame["code"].isin(frame["parent_code"])].reset_index(drop=True)
    leaves["emergency"] = leaves["emergency"].map(
        lambda v: str(v).strip().lower() in ("true", "1", "yes")
    )
    leaves["time_limit"] = pd.to_numeric(leaves["time_limit"], errors="coerce")
    for row in leaves.itertuples():
        if pd.isna(row.time_limit) or row.time_unit not in (
            "work_hours",
            "work_days",
            "hours",
            "days",
            "clock_hours",
        ):
            raise SynthInputError(
                f"category {row.code}: needs a time_limit and a time_unit (work_hours/work_days)"
            )
    leaves["default_priority"] = (
        pd.to_numeric(leaves["default_priority"], errors="coerce").fillna(3).astype(int)
    )
    if "name" not in leaves:
        leaves["name"] = leaves["code"]
    return leaves


# --- geometry helpers -------------------------------------------------------------------------


def _transform(geom: object, src: int, dst: int) -> object:
    tr = Transformer.from_crs(CRS.from_epsg(src), CRS.from_epsg(dst), always_xy=True)
    return shapely.transform(geom, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def _snap(geoms: object) -> object:
    return shapely.transform(geoms, lambda c: np.round(c / _PREC) * _PREC)


def _to_storage(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return frame.set_crs(WORK_EPSG, allow_override=True).to_crs(STORAGE_EPSG).reset_index(drop=True)


def _as_multi(geoms: G) -> G:
    out = np.asarray(geoms, dtype=object).copy()
    single = shapely.get_type_id(out) == 3
    out[single] = (
        shapely.multipolygons(out[single][:, None].tolist()) if single.any() else out[single]
    )
    return out


def _polys_only(geom: shapely.Geometry) -> shapely.Geometry:
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts)


def _union_groups(geoms: G, labels: I, n: int) -> G:
    """Union of ``geoms`` per label 0..n-1 (a coverage: shared edges match exactly)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    out = np.empty(n, dtype=object)
    for g in range(n):
        part = geoms[order[bounds[g] : bounds[g + 1]]]
        if len(part) == 0:
            raise SynthError(f"internal: unit {g} received no territory")
        out[g] = part[0] if len(part) == 1 else _union(part)
    return out


def _union(parts: G) -> shapely.Geometry:
    try:
        merged = shapely.coverage_union_all(parts)
        if merged.is_valid and merged.geom_type in ("Polygon", "MultiPolygon"):
            return merged
    except shapely.errors.GEOSException:
        pass  # snap rounding noded a shared edge differently on its two sides: overlay instead
    return _polys_only(shapely.union_all(parts, grid_size=_PREC))


def _rotation(angle: float) -> F:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _sample_inside(polys: G, which: I, rng: np.random.Generator, rounds: int = 60) -> F:
    """One uniform random point inside ``polys[which[k]]`` for every k (rejection sampling)."""
    bounds = shapely.bounds(polys)
    out = np.full((len(which), 2), np.nan)
    todo = np.arange(len(which))
    shapely.prepare(polys)
    for _ in range(rounds):
        if not len(todo):
            break
        b = bounds[which[todo]]
        x = rng.uniform(b[:, 0], b[:, 2])
        y = rng.uniform(b[:, 1], b[:, 3])
        ok = shapely.contains_xy(polys[which[todo]], x, y)
        out[todo[ok]] = np.column_stack([x[ok], y[ok]])
        todo = todo[~ok]
    if len(todo):  # slivers: fall back to a point surely inside
        pts = shapely.point_on_surface(polys[which[todo]])
        out[todo] = shapely.get_coordinates(pts)
    return out


def _kmeans(
    xy: F,
    k: int,
    rng: np.random.Generator,
    *,
    weights: F | None = None,
    fixed: F | None = None,
    iters: int = 25,
) -> I:
    """Weighted k-means labels (k-means++ start; rows of ``fixed`` are centres that never move)."""
    n = len(xy)
    if k >= n:
        return np.arange(n)
    w = np.ones(n) if weights is None else weights
    centres = np.empty((k, 2))
    nf = 0 if fixed is None else len(fixed)
    if nf:
        centres[:nf] = fixed
    else:
        centres[0] = xy[rng.integers(n)]
        nf = 1
    d2 = ((xy[:, None, :] - centres[None, :nf]) ** 2).sum(-1).min(1)
    for c in range(nf, k):
        p = w * d2 + 1e-12
        centres[c] = xy[rng.choice(n, p=p / p.sum())]
        d2 = np.minimum(d2, ((xy - centres[c]) ** 2).sum(1))
    keep = 0 if fixed is None else len(fixed)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)
        labels = _fill_empty(dist.argmin(1), dist, k)
        sums = np.stack([np.bincount(labels, weights=w * xy[:, j], minlength=k) for j in (0, 1)], 1)
        new = sums / np.bincount(labels, weights=w, minlength=k)[:, None]
        new[:keep] = centres[:keep]
        if np.allclose(new, centres, atol=0.5):
            break
        centres = new
    return labels


def _fill_empty(labels: I, dist: F, k: int) -> I:
    counts = np.bincount(labels, minlength=k)
    for c in np.flatnonzero(counts == 0):
        own = dist[np.arange(len(labels)), labels]
        own[counts[labels] <= 1] = -1
        far = int(own.argmax())
        counts[labels[far]] -= 1
        labels[far] = c
        counts[c] = 1
    return labels


def _rcb(uv: F, sizes: I) -> I:
    """Recursive bisection of points into parts of exactly ``sizes`` (compact, axis-aligned)."""
    labels = np.empty(len(uv), dtype=np.int64)
    stack = [(np.arange(len(uv)), np.arange(len(sizes)))]
    while stack:
        idx, parts = stack.pop()
        if len(parts) == 1:
            labels[idx] = parts[0]
            continue
        left, right = parts[: len(parts) // 2], parts[len(parts) // 2 :]
        axis = int(np.ptp(uv[idx], axis=0).argmax())
        order = idx[np.lexsort((uv[idx, 1 - axis], uv[idx, axis]))]
        cut = int(sizes[left].sum())
        stack += [(order[:cut], left), (order[cut:], right)]
    return labels


# --- the household plan -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    grids: pd.DataFrame  # comm, households, n_mg, special, problem, label


def _plan_households(
    towns: pd.DataFrame, comms: pd.DataFrame, rng: np.random.Generator, scale: float
) -> _Plan:
    """Grids per community and households per grid (problems and special grids included)."""
    n_grids = _grid_counts(comms, rng)
    comm_of = np.repeat(np.arange(len(comms)), n_grids)
    first = np.r_[0, np.cumsum(n_grids)[:-1]]
    problem = np.full(len(comm_of), "", dtype=object)
    special = np.zeros(len(comm_of), dtype=bool)
    label = np.full(len(comm_of), "", dtype=object)
    core = np.flatnonzero(comms["street"].to_numpy() & comms["urban"].to_numpy())
    villages = np.flatnonzero(~comms["urban"].to_numpy())
    towns_urban = np.flatnonzero(comms["urban"].to_numpy() & ~comms["street"].to_numpy())
    picked = rng.permutation(core)
    for c, lab in zip(picked[:3], ("工业园区", "第一中学", "农贸市场"), strict=False):
        g = first[c] + n_grids[c] - 1
        special[g], label[g] = True, lab
    two = towns_urban[n_grids[towns_urban] > 1]
    if len(two):
        g = first[two[0]] + n_grids[two[0]] - 1
        special[g], label[g] = True, "物流园区"
    over = list(picked[3:5]) + list(rng.choice(villages, 1)) if len(villages) else list(picked[3:5])
    rest = np.setdiff1d(villages, over)
    under = list(rng.choice(towns_urban, 1)) if len(towns_urban) else []
    under += list(rng.choice(rest, min(2, len(rest)), replace=False))
    in_comm = np.isin(comm_of, over)
    problem[in_comm & ~special] = "over"
    problem[np.isin(comm_of, under) & ~special] = "under"
    hh = rng.uniform(330, 500, len(comm_of))
    hh[problem == "over"] = rng.uniform(720, 950, (problem == "over").sum())
    hh[problem == "under"] = rng.uniform(120, 190, (problem == "under").sum())
    hh[special] = rng.uniform(20, 40, special.sum())
    fixed = (problem != "") | special
    target = TARGET_HOUSEHOLDS * scale
    hh[~fixed] *= (target / scale - hh[fixed].sum()) / hh[~fixed].sum()
    hh = np.maximum(1, np.round(hh * scale)).astype(np.int64)
    per_mg = rng.uniform(55, 75, len(hh))
    n_mg = np.maximum(1, np.round(hh / per_mg)).astype(np.int64)
    n_mg[special] = 1
    grids = pd.DataFrame(
        {
            "comm": comm_of,
            "households": hh,
            "n_mg": n_mg,
            "special": special,
            "problem": problem,
            "label": label,
        }
    )
    return _Plan(grids)


def _grid_counts(comms: pd.DataFrame, rng: np.random.Generator) -> I:
    """One grid per village and town community (a few two); streets' communities share the rest."""
    urban, street = comms["urban"].to_numpy(), comms["street"].to_numpy()
    n = np.ones(len(comms), dtype=np.int64)
    villages, towns_urban, core = (
        np.flatnonzero(~urban),
        np.flatnonzero(urban & ~street),
        np.flatnonzero(urban & street),
    )
    n[rng.choice(villages, min(10, len(villages)), replace=False)] = 2
    n[rng.choice(towns_urban, min(2, len(towns_urban)), replace=False)] = 2
    if len(core):
        left = max(TARGET_GRIDS - int(n[~(urban & street)].sum()), 2 * len(core))
        n[core] = left // len(core)
        n[rng.choice(core, left % len(core), replace=False)] += 1
    return n


def _split_counts(
    total: I, parts: I, rng: np.random.Generator, *, lo: int = 30, hi: int = 100
) -> I:
    """Split each ``total[g]`` into ``parts[g]`` positive integers that sum exactly, jittered
    but kept inside [lo, hi] whenever the even split is; returns them concatenated by g."""
    group = np.repeat(np.arange(len(total)), parts)
    base = total[group] // parts[group]
    rank = np.arange(len(group)) - np.repeat(np.cumsum(parts) - parts, parts)
    out = base + (rank < (total % parts)[group])
    room = np.clip(np.minimum(base - lo, hi - 1 - base) // 2, 0, 15)
    delta = np.minimum(np.abs(rng.normal(0, 8, len(group))).astype(np.int64), room)
    delta *= rng.choice([-1, 1], len(group))
    # zero-sum within a group: subtract a shuffled copy of each group's deltas
    perm = np.lexsort((rng.random(len(group)), group))
    out = out + delta - delta[perm]
    return np.maximum(out, 1)


# --- territory --------------------------------------------------------------------------------


@dataclass
class _Lattice:
    centre: F
    spacing: float
    angle: float
    i: I
    j: I
    town: int
    mg: I  # global micro-grid id of each block (set when split)
    u_names: dict[int, str]
    v_names: dict[int, str]
    main_every: int

    def node(self, i: I | F, j: I | F) -> F:
        local = np.column_stack([np.asarray(i) * self.spacing, np.asarray(j) * self.spacing])
        return np.round((self.centre + local @ _rotation(self.angle).T) / _PREC) * _PREC

    def blocks(self) -> G:
        corners = [
            self.node(self.i + a, self.j + b) for a, b in ((0, 0), (1, 0), (1, 1), (0, 1), (0, 0))
        ]
        return shapely.polygons(np.stack(corners, axis=1))


@dataclass
class _Territory:
    county: shapely.Geometry
    seats: F  # per township
    lattices: list[_Lattice]
    grids: pd.DataFrame  # comm, households, n_mg, special, problem, label, code, name, kind
    mgs: pd.DataFrame  # grid, households, code, name, kind, block (lattice, i, j) or -1
    mg_geom: G
    grid_geom: G
    comm_geom: G
    town_geom: G
    county_geom: shapely.Geometry


def _territory(
    county: shapely.Geometry,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    plan: _Plan,
    rng: np.random.Generator,
) -> _Territory:
    core = _transform(shapely.Point(SEAT_LONLAT), STORAGE_EPSG, WORK_EPSG)
    if not county.buffer(-3000).contains(core):
        core = shapely.point_on_surface(
            county.buffer(-3000) if not county.buffer(-3000).is_empty else county
        )
    seats = _seats(county, towns, np.array(shapely.get_coordinates(core)[0]), rng)
    grids = plan.grids.copy()
    lattices = _lattices(county, towns, comms, grids, seats, rng)
    atoms = _atoms(county, seats, lattices, rng)
    grid_of, local = _assign(atoms, towns, comms, grids, seats, lattices, rng)
    mgs, mg_of = _micro_grid_table(grids, grid_of, local, atoms, lattices, rng)
    grids["n_mg"] = np.bincount(mgs["grid"].to_numpy(), minlength=len(grids))
    mg_geom = _union_groups(atoms.geoms, mg_of, len(mgs))
    grid_geom = _union_groups(mg_geom, mgs["grid"].to_numpy(), len(grids))
    comm_geom = _union_groups(grid_geom, grids["comm"].to_numpy(), len(comms))
    town_geom = _union_groups(comm_geom, comms["town"].to_numpy(), len(towns))
    county_geom = _union_groups(town_geom, np.zeros(len(towns), dtype=np.int64), 1)[0]
    terr = _Territory(
        county, seats, lattices, grids, mgs, mg_geom, grid_geom, comm_geom, town_geom, county_geom
    )
    _name_units(terr, comms)
    return terr


def _seats(county: shapely.Geometry, towns: pd.DataFrame, core: F, rng: np.random.Generator) -> F:
    """Township seats: the county seat for streets and the seat town, k-means centres elsewhere."""
    pts = _jittered_grid(county, 1500.0, rng)
    rural = np.flatnonzero(~towns["street"].to_numpy() & ~towns["seat_town"].to_numpy())
    labels = _kmeans(pts, len(rural) + 1, rng, fixed=core[None])
    centres = (
        np.stack([pts[labels == c].mean(0) for c in range(1, len(rural) + 1)])
        if len(rural)
        else np.empty((0, 2))
    )
    inside = (
        shapely.contains_xy(county, centres[:, 0], centres[:, 1])
        if len(rural)
        else np.ones(0, bool)
    )
    for c in np.flatnonzero(~inside):  # a concave township: use its member point nearest the mean
        members = pts[labels == c + 1]
        centres[c] = members[((members - centres[c]) ** 2).sum(1).argmin()]
    seats = np.repeat(core[None], len(towns), axis=0)
    seats[rural[rng.permutation(len(rural))]] = centres
    return seats


def _jittered_grid(region: shapely.Geometry, spacing: float, rng: np.random.Generator) -> F:
    x0, y0, x1, y1 = region.bounds
    gx, gy = np.meshgrid(
        np.arange(x0, x1, spacing) + spacing / 2, np.arange(y0, y1, spacing) + spacing / 2
    )
    x = gx.ravel() + rng.uniform(-0.45, 0.45, gx.size) * spacing
    y = gy.ravel() + rng.uniform(-0.45, 0.45, gy.size) * spacing
    keep = shapely.contains_xy(region, x, y)
    return np.column_stack([x[keep], y[keep]])


_STREET_WORDS = list(
    "人民建设解放新华团结胜利和平滨河红旗东风文化育才光明朝阳振兴幸福兴隆长安复兴友谊民主健康青年工农中山城南城北河西金山翠屏"
)


def _street_names(
    rng: np.random.Generator, lo: int, hi: int, suffixes: tuple[str, str], main_every: int
) -> dict[int, str]:
    words = [a + b for a, b in zip(_STREET_WORDS[::2], _STREET_WORDS[1::2], strict=True)]
    picks = rng.permutation(len(words))
    names = {}
    for k, line in enumerate(range(lo, hi + 1)):
        word = words[picks[k % len(words)]] + ("" if k < len(words) else str(k // len(words) + 1))
        names[line] = word + (suffixes[0] if line % main_every == 0 else suffixes[1])
    return names


def _lattices(
    county: shapely.Geometry,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    grids: pd.DataFrame,
    seats: F,
    rng: np.random.Generator,
) -> list[_Lattice]:
    """Street lattices: the county seat's core (streets + seat town 社区) and one per town."""
    urban = comms["urban"].to_numpy()
    blocks_of_comm = (
        grids.groupby("comm")["n_mg"].sum().reindex(range(len(comms)), fill_value=0).to_numpy()
    )
    groups: list[tuple[int, NDArray[np.int64]]] = []
    core_comms = np.flatnonzero(comms["core"].to_numpy())
    if len(core_comms):
        groups.append(
            (
                int(np.flatnonzero(towns["seat_town"].to_numpy() | towns["street"].to_numpy())[0]),
                core_comms,
            )
        )
    for town in np.flatnonzero(~towns["street"].to_numpy() & ~towns["seat_town"].to_numpy()):
        members = np.flatnonzero(urban & (comms["town"].to_numpy() == town))
        if len(members):
            groups.append((int(town), members))
    taken = shapely.Polygon()
    out = []
    for k, (t, members) in enumerate(groups):
        spacing = 130.0 if k == 0 else float(rng.uniform(100, 125))
        lat = _place_lattice(
            county, taken, seats[t], int(blocks_of_comm[members].sum()), spacing, rng, t
        )
        _split_lattice(lat, members, comms, grids)
        taken = shapely.union_all(
            [taken, shapely.box(*shapely.total_bounds(lat.blocks())).buffer(600)]
        )
        out.append(lat)
    return out


def _place_lattice(
    county: shapely.Geometry,
    taken: shapely.Geometry,
    centre: F,
    n: int,
    spacing: float,
    rng: np.random.Generator,
    town: int,
) -> _Lattice:
    angle = float(rng.uniform(-0.5, 0.5))
    aspect = float(rng.uniform(1.0, 1.7))
    r = int(np.ceil(np.sqrt(n) * aspect)) + 4
    i, j = (a.ravel() for a in np.meshgrid(np.arange(-r, r), np.arange(-r, r)))
    lat = _Lattice(centre, spacing, angle, i, j, town, np.full(len(i), -1), {}, {}, 4)
    room = shapely.difference(county.buffer(-150), taken)
    ok = shapely.within(lat.blocks(), room)
    if ok.sum() < n:
        raise SynthError(f"no room for a street lattice of {n} blocks around township seat {town}")
    du, dv = (i + 0.5) / aspect, (j + 0.5) * aspect
    score = np.hypot(du, dv) + rng.uniform(0, 0.8, len(i))
    pick = np.flatnonzero(ok)[np.argsort(score[ok], kind="stable")[:n]]
    lat.i, lat.j, lat.mg = i[pick], j[pick], np.full(n, -1)
    lat.main_every = 4 if n > 60 else 3
    lat.u_names = _street_names(
        rng, int(lat.j.min()), int(lat.j.max()) + 1, ("路", "街"), lat.main_every
    )
    lat.v_names = _street_names(
        rng, int(lat.i.min()), int(lat.i.max()) + 1, ("大道", "巷"), lat.main_every
    )
    return lat


def _split_lattice(lat: _Lattice, members: I, comms: pd.DataFrame, grids: pd.DataFrame) -> None:
    """Blocks -> townships -> communities -> grids by bisection; each block one micro-grid."""
    uv = np.column_stack([lat.i, lat.j]).astype(float)
    towns_of = comms["town"].to_numpy()[members]
    town_ids = np.unique(towns_of)
    gsize = grids["n_mg"].to_numpy()
    comm_sizes = np.array([gsize[grids["comm"].to_numpy() == c].sum() for c in members])
    town_sizes = np.array([comm_sizes[towns_of == t].sum() for t in town_ids])
    by_town = _rcb(uv, town_sizes)
    grid_of_block = np.full(len(uv), -1)
    for ti, t in enumerate(town_ids):
        in_t = np.flatnonzero(by_town == ti)
        cm = members[towns_of == t]
        by_comm = _rcb(uv[in_t], comm_sizes[towns_of == t])
        for ci, c in enumerate(cm):
            in_c = in_t[by_comm == ci]
            gids = np.flatnonzero(grids["comm"].to_numpy() == c)
            grid_of_block[in_c] = gids[_rcb(uv[in_c], gsize[gids])]
    lat.mg = grid_of_block  # grid ids for now; micro-grid ids once the table exists


@dataclass(frozen=True)
class _Atoms:
    geoms: G
    xy: F
    area: F
    block: B  # lattice block (urban) or rural Voronoi cell
    lattice: I
    index: I  # position inside its lattice
    adj: tuple[I, I]


def _atoms(
    county: shapely.Geometry, seats: F, lattices: list[_Lattice], rng: np.random.Generator
) -> _Atoms:
    """Lattice blocks plus Voronoi cells of seed points (denser near seats) over the rest."""
    blocks = np.concatenate([lat.blocks() for lat in lattices]) if lattices else np.empty(0, object)
    urban = shapely.union_all(blocks, grid_size=_PREC) if len(blocks) else shapely.Polygon()
    rural_region = _snap(shapely.difference(county, urban, grid_size=_PREC))
    pts = _jittered_grid(shapely.difference(county, urban.buffer(40)), 300.0, rng)
    d = cKDTree(seats).query(pts)[0]
    keep = rng.random(len(pts)) < 0.3 + 0.7 * np.exp(-(d**2) / (2 * 2500.0**2))
    pts = pts[keep]
    x0, y0, x1, y1 = county.bounds
    cells = shapely.get_parts(
        shapely.voronoi_polygons(
            shapely.multipoints(pts),
            extend_to=shapely.box(x0 - 5e4, y0 - 5e4, x1 + 5e4, y1 + 5e4),
            ordered=True,
        )
    )
    cells = np.asarray(_snap(cells), dtype=object)
    shapely.prepare(rural_region)
    inside = shapely.contains(rural_region, cells)
    cells[~inside] = shapely.intersection(cells[~inside], rural_region, grid_size=_PREC)
    cells = shapely.get_parts(cells[~shapely.is_empty(cells)])
    cells = cells[shapely.get_type_id(cells) == 3]
    cells = cells[shapely.area(cells) > 0]
    geoms = np.concatenate([blocks, cells])
    n_blocks = len(blocks)
    lat_id = np.concatenate(
        [np.full(len(lat.i), k) for k, lat in enumerate(lattices)] + [np.full(len(cells), -1)]
    ).astype(np.int64)
    index = np.concatenate(
        [np.arange(len(lat.i)) for lat in lattices] + [np.full(len(cells), -1)]
    ).astype(np.int64)
    xy = shapely.get_coordinates(shapely.centroid(geoms))
    block = np.arange(len(geoms)) < n_blocks
    return _Atoms(geoms, xy, shapely.area(geoms), block, lat_id, index, _adjacency(geoms))


def _adjacency(geoms: G) -> tuple[I, I]:
    """Pairs of atoms sharing an edge (not just a corner), both directions."""
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    rel = shapely.relate(geoms[a], geoms[b])
    edge = (
        np.array([r[4] == "1" or r[0] == "2" for r in rel], dtype=bool)
        if len(rel)
        else np.zeros(0, bool)
    )
    a, b = a[edge], b[edge]
    return np.concatenate([a, b]).astype(np.int64), np.concatenate([b, a]).astype(np.int64)


def _assign(
    atoms: _Atoms,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    grids: pd.DataFrame,
    seats: F,
    lattices: list[_Lattice],
    rng: np.random.Generator,
) -> tuple[I, I]:
    """Grid and local micro-grid label of every atom (township -> village -> grid -> micro-grid)."""
    rural = ~atoms.block
    grid_of = np.full(len(atoms.geoms), -1, dtype=np.int64)
    for k, lat in enumerate(lattices):
        sel = atoms.block & (atoms.lattice == k)
        grid_of[sel] = lat.mg[atoms.index[sel]]
    comm_grid, town_comm = grids["comm"].to_numpy(), comms["town"].to_numpy()
    town = np.where(atoms.block, town_comm[comm_grid[np.maximum(grid_of, 0)]], -1)
    town[rural] = _nearest_seat(atoms.xy[rural], towns, seats, rng)
    town = _contiguous(town, np.zeros_like(town), atoms, rural)
    comm = np.where(atoms.block, comm_grid[np.maximum(grid_of, 0)], -1)
    for t in range(len(towns)):
        sel = np.flatnonzero(rural & (town == t))
        villages = np.flatnonzero((town_comm == t) & ~comms["urban"].to_numpy())
        if not len(sel):
            continue
        if not len(villages):
            raise SynthError(
                f"township {towns['code'].iloc[t]} has rural land but no village to hold it"
            )
        comm[sel] = villages[
            _parts(atoms, sel, len(villages), rng, what=f"township {towns['code'].iloc[t]}")
        ]
    comm = _contiguous(comm, town, atoms, rural)
    for c in np.unique(comm[rural]):
        sel = np.flatnonzero(rural & (comm == c))
        gids = np.flatnonzero(comm_grid == c)
        grid_of[sel] = gids[
            _parts(atoms, sel, len(gids), rng, what=f"community {comms['code'].iloc[c]}")
        ]
    grid_of = _contiguous(grid_of, comm, atoms, rural)
    local = np.zeros(len(atoms.geoms), dtype=np.int64)
    n_mg = grids["n_mg"].to_numpy()
    for g in np.unique(grid_of[rural]):
        sel = np.flatnonzero(rural & (grid_of == g))
        local[sel] = _kmeans(
            atoms.xy[sel], min(int(n_mg[g]), len(sel)), rng, weights=atoms.area[sel]
        )
    key = grid_of * 100_000 + local
    local = _contiguous(key, grid_of, atoms, rural) % 100_000
    for k in range(len(lattices)):
        sel = atoms.block & (atoms.lattice == k)
        local[sel] = atoms.index[sel]  # one micro-grid per block; renumbered later
    return grid_of, local


def _parts(atoms: _Atoms, sel: I, k: int, rng: np.random.Generator, *, what: str) -> I:
    if len(sel) < k:
        raise SynthError(f"{what}: {len(sel)} cells of land cannot make {k} units")
    return _kmeans(atoms.xy[sel], k, rng, weights=atoms.area[sel])


def _nearest_seat(xy: F, towns: pd.DataFrame, seats: F, rng: np.random.Generator) -> I:
    """Rural land goes to the nearest seat (weighted, so townships differ in size); streets hold
    only their lattice and the seat town takes the land around the county seat."""
    eligible = np.flatnonzero(~towns["street"].to_numpy())
    weight = rng.uniform(0.85, 1.15, len(eligible))
    d = np.sqrt(((xy[:, None, :] - seats[eligible][None]) ** 2).sum(-1)) / weight
    return eligible[d.argmin(1)]


def _contiguous(labels: I, parent: I, atoms: _Atoms, movable: B) -> I:
    """Move every detached piece of a unit to a sibling it touches, keeping the largest piece."""
    i, j = atoms.adj
    labels = labels.copy()
    n = len(labels)
    for _ in range(50):
        same = labels[i] == labels[j]
        graph = sparse.coo_matrix((np.ones(same.sum()), (i[same], j[same])), shape=(n, n))
        n_comp, comp = connected_components(graph, directed=False)
        comp_area = np.bincount(comp, weights=atoms.area, minlength=n_comp)
        comp_label = np.zeros(n_comp, dtype=np.int64)
        comp_label[comp] = labels
        order = np.lexsort((-comp_area, comp_label))
        minor = np.zeros(n_comp, dtype=bool)
        minor[order[1:][comp_label[order][1:] == comp_label[order][:-1]]] = True
        minor &= np.bincount(comp, weights=~movable, minlength=n_comp) == 0
        if not minor.any():
            break
        cand = (
            minor[comp[i]] & ~minor[comp[j]] & (parent[i] == parent[j]) & (labels[i] != labels[j])
        )
        src, first = np.unique(comp[i[cand]], return_index=True)
        if not len(src):
            break
        new = np.full(n_comp, -1, dtype=np.int64)
        new[src] = labels[j[cand]][first]
        labels = np.where(new[comp] >= 0, new[comp], labels)
    return labels


def _micro_grid_table(
    grids: pd.DataFrame,
    grid_of: I,
    local: I,
    atoms: _Atoms,
    lattices: list[_Lattice],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, I]:
    """One row per (grid, local label) with its households; the micro-grid id of every atom."""
    pairs, mg_of = np.unique(np.column_stack([grid_of, local]), axis=0, return_inverse=True)
    mg_of = mg_of.ravel()
    grid = pairs[:, 0]
    count = np.bincount(grid, minlength=len(grids))
    if (count == 0).any():
        raise SynthError(f"internal: grid(s) {np.flatnonzero(count == 0)[:5]} received no land")
    hh = _split_counts(grids["households"].to_numpy(), count, rng)
    block_of = np.full(len(pairs), -1)
    block_of[mg_of[atoms.block]] = np.flatnonzero(atoms.block)
    mgs = pd.DataFrame({"grid": grid, "households": hh, "atom": block_of})
    mgs["lattice"] = np.where(block_of >= 0, atoms.lattice[np.maximum(block_of, 0)], -1)
    mgs["block"] = np.where(block_of >= 0, atoms.index[np.maximum(block_of, 0)], -1)
    for k, lat in enumerate(lattices):
        sel = mgs["lattice"].to_numpy() == k
        lat.mg = np.full(len(lat.i), -1)
        lat.mg[mgs["block"].to_numpy()[sel]] = np.flatnonzero(sel)
    return mgs, mg_of


def _reading_order(geoms: G, parent: I, parent_geoms: G) -> I:
    """1-based sequence of each unit inside its parent: rows north to south, west to east."""
    pts = shapely.get_coordinates(shapely.point_on_surface(geoms))
    counts = np.bincount(parent, minlength=len(parent_geoms))
    pb = shapely.bounds(parent_geoms)
    h = np.sqrt(shapely.area(parent_geoms) / np.maximum(counts, 1))[parent]
    row = np.floor((pb[parent, 3] - pts[:, 1]) / h)
    order = np.lexsort((pts[:, 0], row, parent))
    seq = np.empty(len(geoms), dtype=np.int64)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    seq[order] = np.arange(len(geoms)) - np.repeat(start, counts) + 1
    return seq


def _name_units(terr: _Territory, comms: pd.DataFrame) -> None:
    grids, mgs = terr.grids, terr.mgs
    gseq = _reading_order(terr.grid_geom, grids["comm"].to_numpy(), terr.comm_geom)
    grids["code"] = (
        comms["code"].to_numpy()[grids["comm"]] + pd.Series(gseq).map("{:03d}".format).to_numpy()
    )
    short = comms["short"].to_numpy()[grids["comm"]]
    grids["name"] = [
        f"{s}{lab}专属网格" if sp else f"{s}第{q}网格"
        for s, q, sp, lab in zip(short, gseq, grids["special"], grids["label"], strict=True)
    ]
    grids["kind"] = np.where(
        grids["special"],
        "special",
        np.where(comms["urban"].to_numpy()[grids["comm"]], "urban", "rural"),
    )
    mseq = _reading_order(terr.mg_geom, mgs["grid"].to_numpy(), terr.grid_geom)
    mgs["seq"] = mseq
    mgs["code"] = (
        grids["code"].to_numpy()[mgs["grid"]] + pd.Series(mseq).map("{:03d}".format).to_numpy()
    )
    mgs["name"] = [
        f"{g}{q}号微网格" for g, q in zip(grids["name"].to_numpy()[mgs["grid"]], mseq, strict=True)
    ]
    mgs["kind"] = grids["kind"].to_numpy()[mgs["grid"]]


def _units_frame(
    terr: _Territory, towns: pd.DataFrame, comms: pd.DataFrame, county_code: str, county_name: str
) -> gpd.GeoDataFrame:
    code = county_code or str(towns["parent_code"].iloc[0])
    rows = [
        pd.DataFrame(
            {
                "code": [code],
                "name": [county_name or code],
                "level": "county",
                "kind": "urban",
                "parent_code": [None],
            }
        ),
        pd.DataFrame(
            {
                "code": towns["code"],
                "name": towns["name"],
                "level": "township",
                "kind": np.where(towns["street"], "urban", "rural"),
                "parent_code": code,
            }
        ),
        pd.DataFrame(
            {
                "code": comms["code"],
                "name": comms["name"],
                "level": "community",
                "kind": np.where(comms["urban"], "urban", "rural"),
                "parent_code": comms["parent_code"],
            }
        ),
        pd.DataFrame(
            {
                "code": terr.grids["code"],
                "name": terr.grids["name"],
                "level": "grid",
                "kind": terr.grids["kind"],
                "parent_code": comms["code"].to_numpy()[terr.grids["comm"]],
            }
        ),
        pd.DataFrame(
            {
                "code": terr.mgs["code"],
                "name": terr.mgs["name"],
                "level": "microgrid",
                "kind": terr.mgs["kind"],
                "parent_code": terr.grids["code"].to_numpy()[terr.mgs["grid"]],
            }
        ),
    ]
    geoms = np.concatenate(
        [[terr.county_geom], terr.town_geom, terr.comm_geom, terr.grid_geom, terr.mg_geom]
    )
    frame = pd.concat(rows, ignore_index=True)
    frame["parent_code"] = (
        frame["parent_code"].astype(object).where(frame["parent_code"].notna(), None)
    )
    return _to_storage(gpd.GeoDataFrame(frame, geometry=_as_multi(geoms), crs=WORK_EPSG))


# --- buildings --------------------------------------------------------------------------------

_HOUSE_PITCH = 28.0  # rural houses sit on a jittered 28 m lattice, so they never overlap
_HOUSE_SIZES = np.array([0.30, 0.28, 0.20, 0.12, 0.06, 0.04])  # households per rural house, 1..6


@dataclass(frozen=True)
class _Buildings:
    frame: gpd.GeoDataFrame  # working CRS; code, address, floors, households, residents
    mg: I  # micro-grid of each building (-1 for the deliberate strays)
    village_centres: F  # per community: centre of its largest hamlet or block (for roads)


def _buildings(
    terr: _Territory,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    county: shapely.Geometry,
    rng: np.random.Generator,
) -> _Buildings:
    urban = _urban_buildings(terr, towns, comms, rng)
    rural = _rural_houses(terr, towns, comms, rng)
    stray = _strays(terr, towns, comms, county, rng)
    parts = [p for p in (urban, rural, stray) if len(p)]
    frame = pd.concat(parts, ignore_index=True)
    comm = frame["comm"].to_numpy()
    order = np.lexsort((frame["rank"].to_numpy(), frame["mg_code"].to_numpy(), comm))
    frame = frame.iloc[order].reset_index(drop=True)
    seq = frame.groupby("comm").cumcount().to_numpy() + 1
    frame["code"] = (
        comms["code"].to_numpy()[frame["comm"]] + pd.Series(seq).map("{:05d}".format).to_numpy()
    )
    frame["residents"] = np.round(frame["households"] * rng.uniform(2.3, 3.0, len(frame))).astype(
        np.int64
    )
    centres = _village_centres(frame, len(comms))
    cols = ["code", "address", "floors", "households", "residents"]
    gdf = gpd.GeoDataFrame(frame[cols], geometry=frame["geometry"].to_numpy(), crs=WORK_EPSG)
    return _Buildings(gdf, frame["mg"].to_numpy(), centres)


def _prefix(towns: pd.DataFrame, comms: pd.DataFrame) -> G:
    """Address prefix of each community: township name + community short name."""
    return (towns["name"].to_numpy()[comms["town"].to_numpy()] + comms["short"].to_numpy()).astype(
        object
    )


def _join(*parts: object) -> G:
    """Element-wise string concatenation of arrays and scalars."""
    out = pd.Series([""] * max(len(p) for p in parts if isinstance(p, np.ndarray)), dtype=object)
    for part in parts:
        out = out + (
            pd.Series(part, dtype=object).astype(str).to_numpy()
            if isinstance(part, np.ndarray)
            else str(part)
        )
    return out.to_numpy(dtype=object)


def _village_centres(frame: pd.DataFrame, n_comms: int) -> F:
    pts = shapely.get_coordinates(shapely.centroid(frame["geometry"].to_numpy()))
    inside = frame["mg"].to_numpy() >= 0
    df = pd.DataFrame(
        {
            "comm": frame["comm"].to_numpy()[inside],
            "hamlet": frame["hamlet"].to_numpy()[inside],
            "x": pts[inside, 0],
            "y": pts[inside, 1],
        }
    )
    sizes = (
        df.groupby(["comm", "hamlet"])
        .agg(n=("x", "size"), x=("x", "mean"), y=("y", "mean"))
        .reset_index()
    )
    best = (
        sizes.sort_values(["comm", "n"], ascending=[True, False])
        .drop_duplicates("comm")
        .set_index("comm")
    )
    out = np.full((n_comms, 2), np.nan)
    out[best.index.to_numpy()] = best[["x", "y"]].to_numpy()
    return out


def _urban_buildings(
    terr: _Territory, towns: pd.DataFrame, comms: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Multi-storey blocks: 1-3 slabs or towers per street block, parallel to the streets."""
    mgs = terr.mgs[terr.mgs["lattice"] >= 0]
    if mgs.empty:
        return pd.DataFrame()
    hh_mg = mgs["households"].to_numpy()
    nb = np.where(
        hh_mg < 60,
        1,
        np.where(hh_mg < 90, rng.integers(1, 3, len(hh_mg)), rng.integers(2, 4, len(hh_mg))),
    )
    nb = np.minimum(nb, np.maximum(hh_mg // 20, 1))
    hh = _split_counts(hh_mg, nb, rng, lo=20, hi=100)
    owner = np.repeat(np.arange(len(mgs)), nb)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(nb) - nb, nb)
    per_floor = np.clip(np.round(hh / rng.uniform(7, 16, len(hh))), 2, 8)
    floors = np.clip(np.ceil(hh / per_floor), 6, 33).astype(np.int64)
    area = np.clip(per_floor * rng.uniform(100, 135, len(hh)), 300, 1500)
    lat_of = mgs["lattice"].to_numpy()[owner]
    block = mgs["block"].to_numpy()[owner]
    geoms = np.empty(len(hh), dtype=object)
    address = np.empty(len(hh), dtype=object)
    grid_comm = terr.grids["comm"].to_numpy()
    comm = grid_comm[mgs["grid"].to_numpy()[owner]]
    for k, lat in enumerate(terr.lattices):
        sel = np.flatnonzero(lat_of == k)
        geoms[sel] = _block_footprints(lat, block[sel], rank[sel], nb[owner[sel]], area[sel], rng)
        i, j = lat.i[block[sel]], lat.j[block[sel]]
        number = 2 * (i - lat.i.min()) + 1
        road = np.array([lat.u_names[int(jj)] for jj in j], dtype=object)
        address[sel] = _join(
            _prefix(towns, comms)[comm[sel]], road, number, "号", rank[sel] + 1, "栋"
        )
    return pd.DataFrame(
        {
            "comm": comm,
            "mg": mgs.index.to_numpy()[owner],
            "mg_code": mgs["code"].to_numpy()[owner],
            "rank": rank,
            "hamlet": mgs.index.to_numpy()[owner],
            "address": address,
            "floors": floors,
            "households": hh,
            "geometry": geoms,
        }
    )


def _block_footprints(
    lat: _Lattice, block: I, rank: I, nb: I, area: F, rng: np.random.Generator
) -> G:
    """Rectangles inside their block, one strip of the block each, set back from the streets."""
    half = lat.spacing / 2 - 10.0
    strip = half / nb
    depth = np.minimum(rng.uniform(12, 18, len(block)), 2 * strip - 4)
    length = np.minimum(area / depth, 2 * half - 4)
    cu = rng.uniform(-1, 1, len(block)) * np.maximum(half - length / 2 - 2, 0)
    cv = (
        -half
        + (2 * rank + 1) * strip
        + rng.uniform(-1, 1, len(block)) * np.maximum(strip - depth / 2 - 2, 0)
    )
    su, sv = np.array([-1, 1, 1, -1, -1]), np.array([-1, -1, 1, 1, -1])
    u = (lat.i[block] + 0.5)[:, None] * lat.spacing + cu[:, None] + su[None] * length[:, None] / 2
    v = (lat.j[block] + 0.5)[:, None] * lat.spacing + cv[:, None] + sv[None] * depth[:, None] / 2
    pts = lat.node(u.ravel() / lat.spacing, v.ravel() / lat.spacing).reshape(len(block), 5, 2)
    return shapely.polygons(pts)


def _rural_houses(
    terr: _Territory, towns: pd.DataFrame, comms: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Rural houses of 1-6 households in 1-4 hamlets per micro-grid, inside the micro-grid."""
    mgs = terr.mgs[terr.mgs["lattice"] < 0]
    sizes, owner = _house_sizes(mgs["households"].to_numpy(), rng)
    n_houses = np.bincount(owner, minlength=len(mgs))
    n_ham = np.minimum(np.minimum(1 + rng.poisson(0.7, len(mgs)), 4), np.maximum(n_houses, 1))
    ham_local = np.floor(rng.random(len(owner)) ** 1.6 * n_ham[owner]).astype(
        np.int64
    )  # hamlet 0 is the main one
    hamlet = np.r_[0, np.cumsum(n_ham)[:-1]][owner] + ham_local
    shrunk = shapely.buffer(terr.mg_geom[mgs.index.to_numpy()], -12.0)
    xy = _place_houses(shrunk, owner, hamlet, rng)
    lost = np.isnan(xy[:, 0])
    if lost.any():  # a sliver with no room: its households join the micro-grid's other houses
        room = np.where(shapely.is_empty(shrunk), terr.mg_geom[mgs.index.to_numpy()], shrunk)
        sizes, owner, hamlet, xy = _fold_lost(sizes, owner, hamlet, xy, lost, room)
    geoms = _house_footprints(xy, rng)
    grid = mgs["grid"].to_numpy()[owner]
    comm = terr.grids["comm"].to_numpy()[grid]
    rank = pd.Series(owner).groupby(owner).cumcount().to_numpy()
    number = rank + 1
    mg_comm = terr.grids["comm"].to_numpy()[mgs["grid"].to_numpy()]
    by_code = np.lexsort((mgs["code"].to_numpy(), mg_comm))
    group_of_mg = np.empty(len(mgs), dtype=np.int64)
    group_of_mg[by_code] = (
        pd.Series(mg_comm[by_code]).groupby(mg_comm[by_code]).cumcount().to_numpy() + 1
    )
    group = group_of_mg[owner]  # 村民小组: micro-grids numbered through the village
    address = _join(_prefix(towns, comms)[comm], group, "组", number, "号")
    floors = rng.choice([1, 2, 3], len(sizes), p=[0.35, 0.45, 0.2])
    return pd.DataFrame(
        {
            "comm": comm,
            "mg": mgs.index.to_numpy()[owner],
            "mg_code": mgs["code"].to_numpy()[owner],
            "rank": rank,
            "hamlet": hamlet + 10_000_000,
            "address": address,
            "floors": floors,
            "households": sizes,
            "geometry": geoms,
        }
    )


def _house_sizes(households: I, rng: np.random.Generator) -> tuple[I, I]:
    """Households per house (1-6) summing exactly to each micro-grid's households."""
    n_draw = np.ceil(households / 2.0).astype(np.int64) + 3
    owner = np.repeat(np.arange(len(households)), n_draw)
    draw = rng.choice(np.arange(1, 7), len(owner), p=_HOUSE_SIZES)
    start = np.repeat(np.cumsum(n_draw) - n_draw, n_draw)
    csum = np.cumsum(draw)
    before = csum - draw - np.r_[0, csum][start]
    keep = before < households[owner]
    size = np.minimum(draw, households[owner] - before)
    return size[keep].astype(np.int64), owner[keep]


def _place_houses(shrunk: G, owner: I, hamlet: I, rng: np.random.Generator) -> F:
    """Jittered lattice positions near each hamlet's centre, inside the shrunk micro-grid."""
    xy = np.full((len(owner), 2), np.nan)
    taken = np.empty(0, dtype=np.int64)
    pending = np.arange(len(owner))
    empty = shapely.is_empty(shrunk)
    for attempt in range(6):
        pending = pending[~empty[owner[pending]]]
        if not len(pending):
            break
        hams, first, need = np.unique(hamlet[pending], return_index=True, return_counts=True)
        mg = owner[pending][first]
        centre = _sample_inside(shrunk, mg, rng)
        placed, keys = _hamlet_slots(shrunk, mg, centre, need, taken, rng, reach=6 + 2 * attempt)
        taken = np.concatenate([taken, keys])
        rank = pd.Series(hamlet[pending]).groupby(hamlet[pending]).cumcount().to_numpy()
        slot = np.searchsorted(hams, hamlet[pending])
        got = rank < placed.counts[slot]
        xy[pending[got]] = placed.xy[placed.start[slot[got]] + rank[got]]
        pending = pending[~got]
    return xy


@dataclass(frozen=True)
class _Slots:
    xy: F  # chosen positions, grouped by hamlet
    start: I
    counts: I


def _hamlet_slots(
    shrunk: G, mg: I, centre: F, need: I, taken: I, rng: np.random.Generator, *, reach: int
) -> tuple[_Slots, I]:
    side = 2 * reach + 1
    di, dj = (
        a.ravel() for a in np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1))
    )
    ci = np.floor(centre / _HOUSE_PITCH).astype(np.int64)
    h = np.repeat(np.arange(len(mg)), side * side)
    gi, gj = ci[h, 0] + np.tile(di, len(mg)), ci[h, 1] + np.tile(dj, len(mg))
    key = gi * 10_000_000 + gj
    pos = (np.column_stack([gi, gj]) + 0.5) * _HOUSE_PITCH + rng.uniform(-3, 3, (len(h), 2))
    spread = _HOUSE_PITCH * np.sqrt(need / 0.9)[h]
    score = np.hypot(*(pos - centre[h]).T) / spread + rng.gumbel(0, 0.35, len(h))
    ok = ~np.isin(key, taken) & shapely.contains_xy(shrunk[mg[h]], pos[:, 0], pos[:, 1])
    cand = np.flatnonzero(ok)
    cand = cand[np.lexsort((score[cand], key[cand]))]
    cand = cand[np.r_[True, key[cand][1:] != key[cand][:-1]]]  # a lattice node serves one hamlet
    cand = cand[np.lexsort((score[cand], h[cand]))]
    rank = pd.Series(h[cand]).groupby(h[cand]).cumcount().to_numpy()
    cand = cand[rank < need[h[cand]]]
    counts = np.bincount(h[cand], minlength=len(mg))
    return _Slots(pos[cand], np.r_[0, np.cumsum(counts)[:-1]], counts), key[cand]


def _fold_lost(sizes: I, owner: I, hamlet: I, xy: F, lost: B, room: G) -> tuple[I, I, I, F]:
    """Households of houses that found no room go to a placed house of the same micro-grid, or,
    when a micro-grid has none (a sliver), to one small house at a point surely inside it."""
    placed_mg = set(owner[~lost].tolist())
    extra = np.zeros(len(sizes), dtype=np.int64)
    first_placed = pd.Series(np.flatnonzero(~lost), index=owner[~lost]).groupby(level=0).first()
    keep = ~lost
    for k in np.flatnonzero(lost):
        if owner[k] in placed_mg:
            extra[first_placed[owner[k]]] += sizes[k]
        else:
            xy[k] = shapely.get_coordinates(shapely.point_on_surface(room[owner[k]]))[0]
            placed_mg.add(int(owner[k]))
            first_placed[owner[k]] = k
            keep[k] = True
    sizes = sizes + extra
    return sizes[keep], owner[keep], hamlet[keep], xy[keep]


def _house_footprints(xy: F, rng: np.random.Generator) -> G:
    area = rng.uniform(80, 200, len(xy))
    aspect = rng.uniform(1.0, 1.6, len(xy))
    length, depth = np.sqrt(area * aspect), np.sqrt(area / aspect)
    angle = rng.uniform(-0.35, 0.35, len(xy))
    su, sv = np.array([-1, 1, 1, -1, -1]) / 2, np.array([-1, -1, 1, 1, -1]) / 2
    lu, lv = su[None] * length[:, None], sv[None] * depth[:, None]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    pts = np.stack([xy[:, :1] + c * lu - s * lv, xy[:, 1:] + s * lu + c * lv], axis=-1)
    return shapely.polygons(np.round(pts / _PREC) * _PREC)


def _strays(
    terr: _Territory,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    county: shapely.Geometry,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A few houses just across the county border: deliberate errors for the checks to find."""
    n = int(rng.integers(5, 11))
    ring = county.boundary
    spots = rng.uniform(0, ring.length, 4 * n)
    a, b = (
        shapely.line_interpolate_point(ring, spots - 5),
        shapely.line_interpolate_point(ring, spots + 5),
    )
    pa, pb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    tangent = (pb - pa) / np.maximum(np.hypot(*(pb - pa).T), 1e-9)[:, None]
    normal = np.column_stack([tangent[:, 1], -tangent[:, 0]])
    mid = (pa + pb) / 2
    probe = mid + normal * 20
    normal[shapely.contains_xy(county, probe[:, 0], probe[:, 1])] *= -1
    xy = mid + normal * rng.uniform(60, 250, len(mid))[:, None]
    geoms = _house_footprints(xy, rng)
    ok = np.flatnonzero(shapely.distance(county, geoms) > 15)[:n]
    inside = shapely.get_coordinates(shapely.points(mid[ok] - normal[ok] * 30))
    tree = shapely.STRtree(terr.comm_geom)
    comm = tree.nearest(shapely.points(inside))
    return pd.DataFrame(
        {
            "comm": comm,
            "mg": -1,
            "mg_code": "~",
            "rank": np.arange(len(ok)),
            "hamlet": -1,
            "address": _join(
                _prefix(towns, comms)[comm],
                rng.integers(1, 9, len(ok)),
                "组",
                rng.integers(60, 99, len(ok)),
                "号",
            ),
            "floors": rng.integers(1, 3, len(ok)),
            "households": rng.integers(1, 5, len(ok)),
            "geometry": geoms[ok],
        }
    )


# --- roads ------------------------------------------------------------------------------------

SPEED_KMH = {"primary": 60, "secondary": 50, "tertiary": 40, "residential": 30, "track": 20}
_PRIMARY_NAMES = ("国道210线", "省道302线", "省道201线")


@dataclass
class _Road:
    coords: F
    road_class: str
    name: str


def _roads(
    terr: _Territory,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    bld: _Buildings,
    county: shapely.Geometry,
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    """Trunk roads between township seats, street lattices, tracks to every village; the lines
    meet only at shared end points, so the set is a routable graph."""
    streets, boundary = _lattice_streets(terr.lattices)
    hubs, hub_lat = _hubs(towns, terr.lattices)
    trunk = _trunk_roads(terr.seats, hubs, hub_lat, boundary, county, rng)
    pool = np.concatenate(
        [r.coords for r in trunk] + [np.concatenate(list(boundary.values()))]
        if boundary
        else [r.coords for r in trunk]
    )
    villages = np.flatnonzero(~comms["urban"].to_numpy() & ~np.isnan(bld.village_centres[:, 0]))
    tracks = _tracks(bld.village_centres[villages], comms["short"].to_numpy()[villages], pool, rng)
    lines = _split_at_junctions(streets + trunk + tracks)
    frame = pd.DataFrame(
        {
            "code": [f"RD{k:05d}" for k in range(1, len(lines) + 1)],
            "name": [r.name for r in lines],
            "road_class": [r.road_class for r in lines],
        }
    )
    frame["speed_kmh"] = frame["road_class"].map(SPEED_KMH).astype(np.int64)
    return gpd.GeoDataFrame(
        frame,
        geometry=np.array([shapely.LineString(r.coords) for r in lines], dtype=object),
        crs=WORK_EPSG,
    )


def _lattice_streets(lattices: list[_Lattice]) -> tuple[list[_Road], dict[int, F]]:
    """Every block edge is a street segment; also each lattice's boundary nodes."""
    roads: list[_Road] = []
    boundary: dict[int, F] = {}
    for k, lat in enumerate(lattices):
        i, j = lat.i, lat.j
        # edge keys: (horizontal?, i, j) of the edge starting at node (i, j)
        edges = np.concatenate(
            [
                np.column_stack([np.ones_like(i), i, j]),
                np.column_stack([np.ones_like(i), i, j + 1]),
                np.column_stack([np.zeros_like(i), i, j]),
                np.column_stack([np.zeros_like(i), i + 1, j]),
            ]
        )
        uniq, count = np.unique(edges, axis=0, return_counts=True)
        horiz = uniq[:, 0] == 1
        a = lat.node(uniq[:, 1], uniq[:, 2])
        b = lat.node(uniq[:, 1] + horiz, uniq[:, 2] + ~horiz)
        line = np.where(horiz, uniq[:, 2], uniq[:, 1])
        for e in range(len(uniq)):
            main = line[e] % lat.main_every == 0
            name = lat.u_names[int(line[e])] if horiz[e] else lat.v_names[int(line[e])]
            roads.append(_Road(np.stack([a[e], b[e]]), "tertiary" if main else "residential", name))
        edge_nodes = np.concatenate([a[count == 1], b[count == 1]])
        boundary[k] = np.unique(edge_nodes, axis=0)
    return roads, boundary


def _hubs(towns: pd.DataFrame, lattices: list[_Lattice]) -> tuple[I, dict[int, int]]:
    """Township indices that get a trunk-road hub (not streets: they share the seat town's) and
    the lattice each hub's roads enter by."""
    hubs = np.flatnonzero(~towns["street"].to_numpy())
    seat_town = int(np.flatnonzero(towns["seat_town"].to_numpy())[0])
    by_town = {lat.town: k for k, lat in enumerate(lattices)}
    hub_lat = {int(t): by_town[int(t)] for t in hubs if int(t) in by_town}
    core = [
        k
        for k, lat in enumerate(lattices)
        if towns["street"].iloc[lat.town] or lat.town == seat_town
    ]
    if core:
        hub_lat[seat_town] = core[0]
    return hubs, hub_lat


def _trunk_roads(
    seats: F,
    hubs: I,
    hub_lat: dict[int, int],
    boundary: dict[int, F],
    county: shapely.Geometry,
    rng: np.random.Generator,
) -> list[_Road]:
    """A spanning tree of seats (plus a few loops); primary roads from the county seat outwards."""
    xy = seats[hubs]
    if len(hubs) < 2:
        return []
    edges = _delaunay_edges(xy) if len(hubs) > 2 else np.array([[0, 1]])
    a, b = xy[edges[:, 0]], xy[edges[:, 1]]
    lines = shapely.linestrings(np.stack([a, b], axis=1))
    length = shapely.length(lines)
    outside = shapely.length(shapely.difference(lines, county)) / np.maximum(length, 1)
    w = sparse.coo_matrix(
        (length * (1 + 5 * outside), (edges[:, 0], edges[:, 1])), shape=(len(hubs),) * 2
    )
    tree = minimum_spanning_tree(w).tocoo()
    in_tree = {(min(p, q), max(p, q)) for p, q in zip(tree.row, tree.col, strict=True)}
    is_tree = np.array([(min(p, q), max(p, q)) in in_tree for p, q in edges])
    extra = np.flatnonzero(~is_tree & (outside < 0.02))
    extra = extra[np.argsort(length[extra])][: max(1, len(extra) // 4)]
    chosen = np.concatenate([np.flatnonzero(is_tree), extra])
    core = int(np.argmin(((xy - seats[0]) ** 2).sum(1)))
    primary = _primary_edges(xy, edges, is_tree, core)
    roads = []
    county_no = 1
    for e in chosen:
        p, q = edges[e]
        start = _gateway(hubs[p], xy[q], seats, hub_lat, boundary)
        stop = _gateway(hubs[q], xy[p], seats, hub_lat, boundary)
        if e in primary:
            cls, name = "primary", _PRIMARY_NAMES[primary[e] % len(_PRIMARY_NAMES)]
        else:
            cls, name = "secondary", f"县道X{county_no:03d}线"
            county_no += 1
        roads.append(_Road(_meander(start, stop, rng, step=400.0, amp=0.03), cls, name))
    return roads


def _delaunay_edges(xy: F) -> I:
    tri = Delaunay(xy).simplices
    pairs = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _primary_edges(xy: F, edges: I, is_tree: B, core: int) -> dict[int, int]:
    """Edges on the tree paths from the county seat to the farthest seat in three directions."""
    n = len(xy)
    tree_edges = edges[is_tree]
    adj = sparse.coo_matrix(
        (np.ones(len(tree_edges)), (tree_edges[:, 0], tree_edges[:, 1])), shape=(n, n)
    )
    _, pred = shortest_path(adj, directed=False, indices=core, return_predecessors=True)
    rel = xy - xy[core]
    sector = ((np.arctan2(rel[:, 1], rel[:, 0]) + np.pi) // (2 * np.pi / 3)).astype(int)
    dist = np.hypot(*rel.T)
    index = {(min(p, q), max(p, q)): e for e, (p, q) in enumerate(edges)}
    out: dict[int, int] = {}
    for s in range(3):
        members = np.flatnonzero(sector == s)
        if not len(members):
            continue
        node = int(members[dist[members].argmax()])
        while node != core and node >= 0:
            prev = int(pred[node])
            if prev < 0:
                break
            out.setdefault(index[(min(node, prev), max(node, prev))], s)
            node = prev
    return out


def _gateway(hub: int, toward: F, seats: F, hub_lat: dict[int, int], boundary: dict[int, F]) -> F:
    """Where a road from ``hub`` towards ``toward`` starts: the seat, or the edge of its lattice."""
    if hub not in hub_lat:
        return np.round(seats[hub] / _PREC) * _PREC
    nodes = boundary[hub_lat[hub]]
    return nodes[((nodes - toward) ** 2).sum(1).argmin()]


def _meander(a: F, b: F, rng: np.random.Generator, *, step: float, amp: float) -> F:
    """A gently winding line from a to b (exact end points, smooth sine offsets between)."""
    d = b - a
    length = float(np.hypot(*d))
    n = max(2, int(np.ceil(length / step)))
    t = np.linspace(0, 1, n + 1)
    k = np.arange(1, 4)
    coef = rng.normal(0, amp * length / k)
    offset = (coef[None] * np.sin(np.pi * t[:, None] * k[None])).sum(1)
    normal = np.array([-d[1], d[0]]) / max(length, 1e-9)
    pts = np.round((a + t[:, None] * d + offset[:, None] * normal) / _PREC) * _PREC
    pts[0], pts[-1] = a, b
    return pts


def _tracks(centres: F, names: G, pool: F, rng: np.random.Generator) -> list[_Road]:
    """Each village centre joins the nearest vertex of the network built so far."""
    order = np.argsort(cKDTree(pool).query(centres)[0], kind="stable")
    verts = [pool]
    roads = []
    for v in order:
        allv = np.concatenate(verts)
        d2 = ((allv - centres[v]) ** 2).sum(1)
        near = int(d2.argmin())
        if d2[near] < 50.0**2:
            continue
        start = np.round(centres[v] / _PREC) * _PREC
        line = _meander(start, allv[near], rng, step=250.0, amp=0.05)
        roads.append(
            _Road(
                line,
                "track",
                f"{names[v]}村道" if not str(names[v]).endswith("村") else f"{names[v]}道",
            )
        )
        verts.append(line[:-1])
    return roads


def _split_at_junctions(roads: list[_Road]) -> list[_Road]:
    """Cut lines at any interior vertex where another line ends, so lines meet end to end."""
    ends = {tuple(r.coords[0]) for r in roads} | {tuple(r.coords[-1]) for r in roads}
    out = []
    for r in roads:
        cuts = [k for k in range(1, len(r.coords) - 1) if tuple(r.coords[k]) in ends]
        for lo, hi in zip([0, *cuts], [*cuts, len(r.coords) - 1], strict=True):
            out.append(_Road(r.coords[lo : hi + 1], r.road_class, r.name))
    return out
