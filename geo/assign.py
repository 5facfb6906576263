"""Point-in-polygon assignment: which unit (grid, community, ...) each point or building is in.

Boundary rule: a point on an edge or vertex shared by several polygons ``intersects`` all of
them (it is ``within`` none). It goes to the polygon with the LOWEST index
(``tie_break="lowest_index"``), so callers sort polygons by unit code and the lowest code wins.
Points in overlapping polygons follow the same rule. A point in no polygon gets -1.

Why it is fast: the exact test is a bounding-box ``STRtree.query`` followed by
``shapely.intersects_xy`` on the candidates (faster than ``query(predicate="intersects")``,
which geopandas.sjoin uses), split over threads for large inputs. With many points a raster is
also laid over the polygons: cells that no polygon edge comes near are grouped into connected
regions (``scipy.ndimage.label``); every point of a region intersects the same polygons, so one
exact test per region decides all its points, and only points in cells along edges are tested
one by one. The answer is the same as the direct test's by construction (and tested so).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeAlias

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from geo.coords import CRSError

__all__ = [
    "AssignInputError",
    "CRSMismatchError",
    "PointAssigner",
    "TieBreak",
    "assign_points",
    "assign_polygons_by_representative_point",
]

TieBreak = Literal["lowest_index", "highest_index"]
Geoms: TypeAlias = "ArrayLike | gpd.GeoSeries | gpd.GeoDataFrame"
IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]
ObjArray = NDArray[np.object_]

_NONE = -1
_DIRECT_BELOW = 20_000  # points; with fewer, building the raster costs more than it saves
_POINTS_PER_THREAD = 50_000  # below this per thread, starting threads costs more than it saves
_MAX_THREADS = 8
_MAX_CELLS = 1 << 24  # ~100 MB of mask and labels at most
# Cost model of the raster shortcut (seconds; see _auto_cell).
_COST_QUERY = 1.0e-6  # exact test of one point near an edge (bbox query + intersects_xy)
_COST_CELL = 6e-9  # marking and labelling one cell
_COST_PIECE = 45e-9  # rasterising one cell-long piece of polygon outline
_COST_POLYGON = 5e-6  # extracting a polygon's edges and answering its region(s)
_BAND_PER_EDGE = 0.8  # share of area near edges = this * perimeter * cell size / area
_POINT = (0,)
_POLYGONAL = (3, 6)  # Polygon, MultiPolygon


class CRSMismatchError(CRSError):
    """Points and polygons carry different CRS labels."""


class AssignInputError(ValueError):
    """Input that is not a flat sequence of the expected geometry types."""


def assign_points(
    points: Geoms, polygons: Geoms, *, tie_break: TieBreak = "lowest_index"
) -> IntArray:
    """Index of the polygon each point intersects, -1 when none; ties go by ``tie_break``.

    ``points``: shapely Points (None/empty give -1); ``polygons``: Polygons/MultiPolygons
    (None/empty never match). When both are GeoSeries/GeoDataFrames their CRS must be equal.

    >>> import shapely
    >>> cells = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)]
    >>> pts = shapely.points([(0.5, 0.5), (1.0, 0.5), (1.5, 0.5), (5.0, 5.0)])
    >>> assign_points(pts, cells).tolist()
    [0, 0, 1, -1]
    >>> assign_points(pts, cells, tie_break="highest_index").tolist()
    [0, 1, 1, -1]
    """
    pts, polys = _checked_pair(points, polygons, name="points", kinds=_POINT)
    return _assign(
        pts, polys, tie_break=_checked_tie_break(tie_break), cell=_auto_cell(len(pts), polys)
    )


class PointAssigner:
    """``assign_points`` for points that come in batches (a file read in slices): the tree and
    raster over ``polygons`` are built once, sized for ``expected_points`` in all.

    >>> import shapely
    >>> assigner = PointAssigner([shapely.box(0, 0, 1, 1)], expected_points=2)
    >>> assigner(shapely.points([(0.5, 0.5)])).tolist(), assigner(shapely.points([(3, 3)])).tolist()
    ([0], [-1])
    """

    def __init__(
        self, polygons: Geoms, *, expected_points: int, tie_break: TieBreak = "lowest_index"
    ) -> None:
        self._polygons = polygons
        polys = _geometry_array(polygons, "polygons", _POLYGONAL)
        cell = _auto_cell(expected_points, polys)
        self._index = _PolygonIndex(polys, cell=cell, tie_break=_checked_tie_break(tie_break))

    def __call__(self, points: Geoms) -> IntArray:
        _check_same_crs(points, self._polygons, "points")
        return self._index.assign(_geometry_array(points, "points", _POINT))


def assign_polygons_by_representative_point(
    footprints: Geoms, polygons: Geoms, *, tie_break: TieBreak = "lowest_index"
) -> IntArray:
    """Assign each footprint (e.g. a building) by its ``shapely.point_on_surface``.

    A point on the surface lies inside even a concave footprint (a centroid may not), so a
    building lands in the unit that holds it; one straddling a boundary goes to one side.

    >>> import shapely
    >>> cells = [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)]
    >>> l_shape = shapely.Polygon([(11, 1), (19, 1), (19, 2), (12, 2), (12, 9), (11, 9)])
    >>> assign_polygons_by_representative_point([l_shape, None], cells).tolist()
    [1, -1]
    """
    feet, polys = _checked_pair(footprints, polygons, name="footprints", kinds=_POLYGONAL)
    reps = shapely.point_on_surface(feet)
    return _assign(
        reps, polys, tie_break=_checked_tie_break(tie_break), cell=_auto_cell(len(reps), polys)
    )


# --- validation ----------------------------------------------------------------------------------


def _checked_pair(
    items: Geoms, polygons: Geoms, *, name: str, kinds: tuple[int, ...]
) -> tuple[ObjArray, ObjArray]:
    _check_same_crs(items, polygons, name)
    return _geometry_array(items, name, kinds), _geometry_array(polygons, "polygons", _POLYGONAL)


def _check_same_crs(items: Geoms, polygons: Geoms, name: str) -> None:
    labelled = (gpd.GeoSeries, gpd.GeoDataFrame)
    if not (isinstance(items, labelled) and isinstance(polygons, labelled)):
        return
    if items.crs != polygons.crs:
        raise CRSMismatchError(
            f"{name} are in {_crs_name(items.crs)} but polygons are in "
            f"{_crs_name(polygons.crs)}; convert one with .to_crs() first"
        )


def _crs_name(crs: object) -> str:
    return "no CRS" if crs is None else str(getattr(crs, "to_string", lambda: crs)())


def _geometry_array(geoms: Geoms, name: str, kinds: tuple[int, ...]) -> ObjArray:
    """A 1-D object array of shapely geometries (or None) of the allowed type ids."""
    if isinstance(geoms, gpd.GeoDataFrame):
        geoms = geoms.geometry
    arr = np.asarray(geoms.values if isinstance(geoms, gpd.GeoSeries) else geoms, dtype=object)
    if arr.ndim != 1:
        raise AssignInputError(
            f"{name} must be a flat sequence of geometries, got shape {arr.shape}"
        )
    bad = np.flatnonzero(~np.isin(_type_ids(arr), (-1, *kinds)))  # -1: None
    if bad.size:
        row = int(bad[0])
        raise AssignInputError(
            f"{name}[{row}] is {_describe(arr[row])}; expected {_KIND_NAMES[kinds]} "
            f"({bad.size} bad row(s) in all)"
        )
    return arr


def _type_ids(arr: ObjArray) -> IntArray:
    """shapely type id per row; -1 for None, -2 for objects that are not geometries."""
    try:
        return shapely.get_type_id(arr)
    except TypeError:
        ids = np.full(len(arr), -2, dtype=np.intp)
        is_geom = shapely.is_geometry(arr)
        ids[is_geom] = shapely.get_type_id(arr[is_geom])
        ids[shapely.is_missing(arr)] = -1
        return ids


_KIND_NAMES = {_POINT: "Point", _POLYGONAL: "Polygon or MultiPolygon"}


def _describe(value: object) -> str:
    return value.geom_type if isinstance(value, shapely.Geometry) else f"a {type(value).__name__}"


def _checked_tie_break(tie_break: str) -> TieBreak:
    if tie_break not in ("lowest_index", "highest_index"):
        raise ValueError(f"tie_break must be 'lowest_index' or 'highest_index', not {tie_break!r}")
    return tie_break  # type: ignore[return-value]


# --- exact assignment ----------------------------------------------------------------------------


def _reduce_pairs(n: int, rows: IntArray, cols: IntArray, tie_break: TieBreak) -> IntArray:
    """Per row, the lowest (or highest) col among its (row, col) pairs; -1 for rows without any."""
    if tie_break == "highest_index":
        out = np.full(n, _NONE, dtype=np.intp)
        np.maximum.at(out, rows, cols)
        return out
    sentinel = np.iinfo(np.intp).max
    out = np.full(n, sentinel, dtype=np.intp)
    np.minimum.at(out, rows, cols)
    out[out == sentinel] = _NONE
    return out


@dataclass(frozen=True)
class _Points:
    """Point geometries with their coordinates (NaN for None and empty points)."""

    geoms: ObjArray
    x: FloatArray
    y: FloatArray

    @classmethod
    def of(cls, geoms: ObjArray) -> _Points:
        coords = shapely.get_coordinates(geoms)
        if len(coords) == len(geoms):  # one coordinate per point: no None or empty among them
            return cls(geoms, coords[:, 0], coords[:, 1])
        coords, row = shapely.get_coordinates(geoms, return_index=True)
        x, y = np.full(len(geoms), np.nan), np.full(len(geoms), np.nan)
        x[row], y[row] = coords[:, 0], coords[:, 1]
        return cls(geoms, x, y)

    def __len__(self) -> int:
        return len(self.geoms)

    def take(self, index: IntArray | slice) -> _Points:
        return _Points(self.geoms[index], self.x[index], self.y[index])


def _exact(tree: shapely.STRtree, pts: _Points, tie_break: TieBreak) -> IntArray:
    rows, cols = _intersecting_pairs(tree, pts)
    return _reduce_pairs(len(pts), rows, cols, tie_break)


def _intersecting_pairs(tree: shapely.STRtree, pts: _Points) -> tuple[IntArray, IntArray]:
    """(point, polygon) index pairs that intersect, the work split over threads when large.

    Shapely releases the GIL in both steps and builds the tree when it is created, so threads
    working on disjoint slices of points run in parallel safely.
    """
    workers = min(_usable_cpus(), _MAX_THREADS, len(pts) // _POINTS_PER_THREAD)
    if workers <= 1:
        return _pairs_in_slice(tree, pts, slice(None))
    cuts = np.linspace(0, len(pts), workers + 1).astype(np.intp)
    slices = [slice(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda part: _pairs_in_slice(tree, pts, part), slices))
    rows = np.concatenate([part[0] + cut for part, cut in zip(parts, cuts[:-1], strict=True)])
    return rows, np.concatenate([part[1] for part in parts])


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # honours CPU pinning (containers, taskset)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _pairs_in_slice(tree: shapely.STRtree, pts: _Points, part: slice) -> tuple[IntArray, IntArray]:
    """Bounding-box candidates, then an exact point-in-polygon test with boundary included.

    ``intersects_xy`` on the candidates is faster than ``query(predicate="intersects")``, which
    prepares every query point (useless for points) before testing (measured 25-40%).
    """
    chunk = pts.take(part)
    rows, cols = tree.query(chunk.geoms)
    hit = shapely.intersects_xy(tree.geometries[cols], chunk.x[rows], chunk.y[rows])
    return rows[hit], cols[hit]


def _assign(pts: ObjArray, polys: ObjArray, *, tie_break: TieBreak, cell: float | None) -> IntArray:
    """Direct exact query when ``cell`` is None, else the raster shortcut with that cell size."""
    return _PolygonIndex(polys, cell=cell, tie_break=tie_break).assign(pts)


class _PolygonIndex:
    """The tree over the polygons and, when ``cell`` is given and usable, the raster of the
    regions no edge crosses; both depend on the polygons only."""

    def __init__(self, polys: ObjArray, *, cell: float | None, tie_break: TieBreak) -> None:
        self.tree = shapely.STRtree(polys)
        self.tie_break = tie_break
        self.raster: _Raster | None = None
        bounds = _total_bounds(polys)
        if cell is not None and np.all(np.isfinite(bounds)):  # a raster asked for, and polygons
            raster = _Raster.over(bounds, cell)
            if raster.usable:
                self.raster, self.regions = raster, _clear_regions(polys, raster)

    def assign(self, pts: ObjArray) -> IntArray:
        points = _Points.of(pts)
        if self.raster is None:
            return _exact(self.tree, points, self.tie_break)
        return _assign_by_raster(points, self.tree, self.raster, self.regions, self.tie_break)


# --- raster shortcut -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raster:
    x0: float
    y0: float
    x1: float
    y1: float
    width: float  # of a cell
    height: float
    nx: int
    ny: int
    margin: float  # a cell counts as touched by an edge passing within this distance

    @classmethod
    def over(cls, bounds: FloatArray, cell: float) -> _Raster:
        x0, y0, x1, y1 = (float(v) for v in bounds)
        nx = max(1, int(np.ceil((x1 - x0) / cell)))
        ny = max(1, int(np.ceil((y1 - y0) / cell)))
        width, height = max(x1 - x0, cell) / nx, max(y1 - y0, cell) / ny
        # Far above the rounding error of any coordinate or cell computation, far below a cell.
        margin = 1e-6 * max(width, height) + 1e3 * float(np.spacing(np.max(np.abs(bounds))))
        return cls(x0, y0, x1, y1, width, height, nx, ny, margin)

    @property
    def usable(self) -> bool:
        """False when cells are so small against the coordinates that rounding could matter."""
        return 16 * self.margin < min(self.width, self.height)

    def columns(self, x: FloatArray) -> IntArray:
        return np.clip(np.floor((x - self.x0) / self.width), 0, self.nx - 1).astype(np.intp)

    def rows(self, y: FloatArray) -> IntArray:
        return np.clip(np.floor((y - self.y0) / self.height), 0, self.ny - 1).astype(np.intp)

    def covers(self, x: FloatArray, y: FloatArray) -> NDArray[np.bool_]:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def flat_cells(self, x: FloatArray, y: FloatArray) -> IntArray:
        """Flat (row-major) index of the cell holding each covered point (in place, for speed)."""
        fx = x - self.x0
        fx /= self.width
        np.clip(fx, 0, self.nx - 1, out=fx)  # clipped to >= 0, so truncation below is floor
        fy = y - self.y0
        fy /= self.height
        np.clip(fy, 0, self.ny - 1, out=fy)
        index = fy.astype(np.intp)
        index *= self.nx
        index += fx.astype(np.intp)
        return index


def _auto_cell(n_points: int, polys: ObjArray) -> float | None:
    """Cell size minimising a cost model of the raster shortcut; None when direct is cheaper.

    Time ~ exact tests of points in the band of cells along edges (band area grows with cell
    size) + work per cell and per edge piece (both shrink with cell size) + work per polygon.
    The constants were measured on the 2-core development machine; they only affect speed,
    never the answer.
    """
    bounds = _total_bounds(polys)
    if n_points < _DIRECT_BELOW or not np.all(np.isfinite(bounds)):
        return None
    area = float((bounds[2] - bounds[0]) * (bounds[3] - bounds[1]))
    perimeter = float(np.nansum(shapely.length(polys)))
    if not area > 0:
        return None
    cells = 2.0 ** np.arange(10, np.log2(_MAX_CELLS) + 1)
    size = np.sqrt(area / cells)
    band = np.minimum(1.0, _BAND_PER_EDGE * perimeter * size / area)
    fixed = _COST_POLYGON * len(polys) + _COST_PIECE * perimeter / size + _COST_CELL * cells
    cost = fixed + n_points * _COST_QUERY * band
    best = int(np.argmin(cost))
    return float(size[best]) if cost[best] < n_points * _COST_QUERY else None


def _assign_by_raster(
    pts: _Points,
    tree: shapely.STRtree,
    raster: _Raster,
    regions: NDArray[np.int32],
    tie_break: TieBreak,
) -> IntArray:
    inside = raster.covers(pts.x, pts.y)  # False for NaN; outside the bounds no polygon is hit
    cells = raster.flat_cells(
        np.where(inside, pts.x, raster.x0), np.where(inside, pts.y, raster.y0)
    )
    region = np.where(inside, regions.ravel()[cells], 0)
    out = np.full(len(pts), _NONE, dtype=np.intp)
    clear = np.flatnonzero(region > 0)
    out[clear] = _region_answers(tree, pts, region, clear, tie_break)[region[clear]]
    near_edge = np.flatnonzero(inside & (region == 0))
    out[near_edge] = _exact(tree, pts.take(near_edge), tie_break)
    return out


def _total_bounds(polys: ObjArray) -> FloatArray:
    """(xmin, ymin, xmax, ymax) of all polygons; NaN when there is none that is non-empty."""
    return shapely.total_bounds(polys) if len(polys) else np.full(4, np.nan)


def _region_answers(
    tree: shapely.STRtree, pts: _Points, region: IntArray, clear: IntArray, tie_break: TieBreak
) -> IntArray:
    """Answer per region label, from one exact query of one point in each occupied region."""
    n_regions = int(region.max()) + 1
    sample = np.full(n_regions, len(pts), dtype=np.intp)
    np.minimum.at(sample, region[clear], clear)
    occupied = np.flatnonzero(sample < len(pts))
    answers = np.full(n_regions, _NONE, dtype=np.intp)
    answers[occupied] = _exact(tree, pts.take(sample[occupied]), tie_break)
    return answers


def _clear_regions(polys: ObjArray, raster: _Raster) -> NDArray[np.int32]:
    """Label connected regions of cells no polygon edge comes within ``raster.margin`` of.

    Inside one region no point crosses an edge, so all its points intersect the same polygons.
    Label 0 marks cells near an edge.
    """
    near_edge = _cells_near_edges(_edges(polys), raster)
    labels, _ = ndimage.label(~near_edge)  # 4-connected: neighbours share a cell side
    return labels


def _edges(polys: ObjArray) -> FloatArray:
    """Rows (x0, y0, x1, y1), one per ring segment of any polygon, each shared segment once."""
    rings = shapely.get_rings(shapely.get_parts(polys))
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    same_ring = ring[1:] == ring[:-1]
    start, end = coords[:-1][same_ring], coords[1:][same_ring]
    # Neighbouring units share their edges; rasterise each once (only speed depends on it).
    flip = (start[:, 0] > end[:, 0]) | ((start[:, 0] == end[:, 0]) & (start[:, 1] > end[:, 1]))
    start[flip], end[flip] = end[flip], start[flip].copy()
    segments = np.hstack([start, end])
    segments = segments[np.lexsort(segments.T[::-1])]
    repeated = np.zeros(len(segments), dtype=bool)
    repeated[1:] = np.all(segments[1:] == segments[:-1], axis=1)
    return segments[~repeated]


def _cells_near_edges(edges: FloatArray, raster: _Raster) -> NDArray[np.bool_]:
    """Conservative rasterisation: every cell an edge passes within ``margin`` of is marked.

    Each edge is cut into pieces short enough that a piece's box, grown by the margin, spans at
    most two cells each way; marking the cells at the corners of that box then covers it.
    """
    x0, y0, x1, y1 = (np.ascontiguousarray(column) for column in edges.T)
    dx, dy = x1 - x0, y1 - y0
    reach_x, reach_y = raster.width - 4 * raster.margin, raster.height - 4 * raster.margin
    pieces = np.ceil(np.maximum(np.abs(dx) / reach_x, np.abs(dy) / reach_y))
    pieces = np.maximum(pieces, 1).astype(np.intp)
    # Cut points of edge e at fractions 0, 1/n, ..., 1 of its length; piece k runs cut k -> k+1.
    cuts = pieces + 1
    ends = np.cumsum(cuts) - 1
    step = np.arange(ends[-1] + 1 if len(ends) else 0) - np.repeat(ends - pieces, cuts)
    fraction = step / np.repeat(pieces, cuts)
    cut_x = np.repeat(x0, cuts) + np.repeat(dx, cuts) * fraction
    cut_y = np.repeat(y0, cuts) + np.repeat(dy, cuts) * fraction
    is_piece = np.ones(len(step), dtype=bool)
    is_piece[ends] = False  # the last cut of an edge starts no piece
    cols = _piece_span(raster.columns, cut_x, raster.margin, is_piece[:-1])
    rows = _piece_span(raster.rows, cut_y, raster.margin, is_piece[:-1])
    mask = np.zeros(raster.ny * raster.nx, dtype=bool)
    for r in rows:
        for c in cols:
            mask[r * raster.nx + c] = True
    return mask.reshape(raster.ny, raster.nx)


def _piece_span(
    to_cell: Callable[[FloatArray], IntArray],
    cut: FloatArray,
    margin: float,
    is_piece: NDArray[np.bool_],
) -> tuple[IntArray, IntArray]:
    """First and last cell along one axis of each piece's box grown by the margin."""
    low, high = to_cell(cut - margin), to_cell(cut + margin)
    first = np.minimum(low[:-1], low[1:])[is_piece]
    last = np.maximum(high[:-1], high[1:])[is_piece]
    return first, last
