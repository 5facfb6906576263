"""Hot spots of events over a grid net: Getis–Ord Gi* and a kernel density surface. Pure.

* :func:`getis_ord` — Gi* (PySAL ``esda.G_Local`` with ``star=True``) of a value per polygon on
  queen-contiguity weights (a ``libpysal`` ``W`` built by :func:`queen_neighbours`), with z-scores, two-sided normal p-values and the usual
  hot/cold classes at 90/95/99 % confidence (|z| > 1.645 / 1.960 / 2.576).
* :func:`kernel_density` — a Gaussian kernel density surface of points on a square raster in a
  projected CRS (events per km²), exact up to the kernel's 4-bandwidth cut-off.
* :func:`zonal_mean`, :func:`surface_cells` — the surface summarised per polygon, or as polygons
  a map can draw.

Everything is computed in a projected CRS: the 3-degree Gauss–Krüger zone of CGCS2000 that holds
the data's centre (EPSG:4534–4554, e.g. EPSG:4545 for CM 108°E), unless one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS
from scipy import sparse, stats
from scipy.spatial import cKDTree

__all__ = [
    "CLASSES",
    "DensitySurface",
    "HotspotCRSError",
    "HotspotError",
    "HotspotInputError",
    "classify",
    "getis_ord",
    "kernel_density",
    "projected_crs",
    "queen_neighbours",
    "surface_cells",
    "zonal_mean",
]

CLASSES: tuple[str, ...] = (
    "hot_99", "hot_95", "hot_90", "not_significant", "cold_90", "cold_95", "cold_99",
)  # fmt: skip
"""Gi* classes, hottest first. 'hot_95' means significant at 95 % but not at 99 %."""

_LEVELS = ((0.01, "99"), (0.05, "95"), (0.10, "90"))
_CUTOFF = 4.0  # kernel support in bandwidths: exp(-8) of the mass is dropped beyond it

Geoms: TypeAlias = gpd.GeoDataFrame | gpd.GeoSeries


class HotspotError(ValueError):
    """Hot-spot analysis could not run on the given input."""


class HotspotCRSError(HotspotError):
    """Input without a CRS, with mixed CRSs, or a CRS that is not usable here."""


class HotspotInputError(HotspotError):
    """Input values or options are missing or malformed."""


# --- CRS -------------------------------------------------------------------------------------


def _require_crs(frame: Geoms, name: str) -> CRS:
    if frame.crs is None:
        raise HotspotCRSError(f"{name} has no CRS; set it (storage CRS is EPSG:4490)")
    return CRS.from_user_input(frame.crs)


def projected_crs(frame: Geoms) -> CRS:
    """The CGCS2000 3-degree Gauss–Krüger zone (EPSG:4534–4554) holding ``frame``'s centre.

    >>> import geopandas as gpd, shapely
    >>> projected_crs(gpd.GeoSeries([shapely.Point(108.04, 32.06)], crs=4490)).to_epsg()
    4545
    """
    crs = _require_crs(frame, "frame")
    if crs.is_projected:
        return crs
    minx, miny, maxx, maxy = frame.to_crs(4490).total_bounds
    lon = (minx + maxx) / 2
    if not np.isfinite(lon) or not 73.5 <= lon < 136.5:
        raise HotspotCRSError(f"centre longitude {lon} is outside China's Gauss–Krüger zones")
    return CRS.from_epsg(4534 + int(round((lon - 75.0) / 3.0)))


# --- Getis–Ord Gi* -----------------------------------------------------------------------------


def queen_neighbours(polygons: Geoms, *, snap: float = 0.5) -> dict[int, list[int]]:
    """Queen contiguity by position: polygons touching at an edge or a single point.

    Measured in the projected CRS (:func:`projected_crs`): polygons closer than ``snap`` metres
    count as touching, which forgives digitising gaps and coordinates that differ in the last
    bits, where vertex matching (``libpysal.weights.Queen``) would split the net apart.

    >>> import geopandas as gpd, shapely
    >>> boxes = [shapely.box(i, j, i + 1, j + 1) for j in range(2) for i in range(2)]
    >>> queen_neighbours(gpd.GeoSeries(boxes, crs=4545))[0]
    [1, 2, 3]
    """
    work = projected_crs(polygons)
    geoms = polygons.geometry.to_crs(work).values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=snap)
    pairs = left != right
    out: dict[int, list[int]] = {i: [] for i in range(len(geoms))}
    for a, b in zip(left[pairs].tolist(), right[pairs].tolist(), strict=True):
        out[a].append(b)
    return {i: sorted(v) for i, v in out.items()}


def classify(z: NDArray[np.float64], p: NDArray[np.float64]) -> NDArray[np.object_]:
    """Hot/cold classes from z-scores and two-sided p-values (NaN -> not significant).

    >>> classify(np.array([3.0, -2.0, 1.7, 0.1]), np.array([0.003, 0.046, 0.09, 0.9])).tolist()
    ['hot_99', 'cold_95', 'hot_90', 'not_significant']
    """
    z, p = np.asarray(z, dtype=float), np.asarray(p, dtype=float)
    out = np.full(z.shape, "not_significant", dtype=object)
    for alpha, label in reversed(_LEVELS):  # weakest first, so the strongest level wins
        sig = np.nan_to_num(p, nan=1.0) <= alpha
        out[sig & (z > 0)] = f"hot_{label}"
        out[sig & (z < 0)] = f"cold_{label}"
    return out


def getis_ord(
    units: gpd.GeoDataFrame,
    *,
    value: str,
    permutations: int = 0,
    snap: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> pd.DataFrame:
    """Gi* of column ``value`` on queen contiguity; index as ``units``.

    Columns: ``gi_z`` (z-score), ``gi_p`` (two-sided normal p-value), ``gi_class`` (see
    :data:`CLASSES`), ``gi_psim`` (pseudo p-value of ``permutations`` conditional permutations,
    only when ``permutations > 0``). ``snap``: see :func:`queen_neighbours`. A constant value
    gives NaN scores, not significant.

    >>> import geopandas as gpd, shapely
    >>> boxes = [shapely.box(i, j, i + 1, j + 1) for j in range(5) for i in range(5)]
    >>> counts = [9 if i in (0, 1, 5, 6) else 1 for i in range(25)]
    >>> g = gpd.GeoDataFrame({"n": counts}, geometry=boxes, crs=4545)
    >>> getis_ord(g, value="n").loc[0, "gi_class"]
    'hot_99'
    """
    y = _checked_values(units, value)
    _require_crs(units, "units")
    if len(y) < 3:
        raise HotspotInputError(f"Gi* needs at least 3 polygons, got {len(y)}")
    z, p, psim = _gi_star(units, y, permutations, snap, np.random.default_rng(rng))
    frame = pd.DataFrame({"gi_z": z, "gi_p": p, "gi_class": classify(z, p)}, index=units.index)
    if psim is not None:
        frame["gi_psim"] = psim
    return frame


def _checked_values(units: gpd.GeoDataFrame, value: str) -> NDArray[np.float64]:
    if value not in units.columns:
        raise HotspotInputError(f"column {value!r} is not in units ({list(units.columns)})")
    y = pd.to_numeric(units[value], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise HotspotInputError(f"{value} is missing or not numeric at row {units.index[bad[0]]!r}")
    return y


def _gi_star(
    units: gpd.GeoDataFrame,
    y: NDArray[np.float64],
    permutations: int,
    snap: float,
    gen: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    from esda.getisord import G_Local
    from libpysal.weights import W

    if np.allclose(y, y[0]):
        nan = np.full(len(y), np.nan)
        return nan, nan, (nan if permutations else None)
    w = W(queen_neighbours(units, snap=snap), silence_warnings=True)
    seed = int(gen.integers(2**31 - 1))
    # a neighbourhood that spans every polygon has zero variance: its z is NaN, not an error
    with np.errstate(invalid="ignore", divide="ignore"):
        g = G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed, n_jobs=1)
    z = np.asarray(g.Zs, dtype=float)
    p = 2.0 * stats.norm.sf(np.abs(z))
    return z, p, (np.asarray(g.p_sim, dtype=float) if permutations else None)


# --- kernel density ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DensitySurface:
    """A raster of densities (per km²): ``values[row, col]``, row 0 at the south edge.

    Cell ``(r, c)`` is the square with lower-left corner ``(x0 + c * cell, y0 + r * cell)`` in
    ``crs`` (projected, metres).
    """

    values: NDArray[np.float64]
    x0: float
    y0: float
    cell: float
    bandwidth: float
    crs: CRS

    def centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """x and y of every cell centre, each shaped like ``values``."""
        ny, nx = self.values.shape
        xs = self.x0 + (np.arange(nx) + 0.5) * self.cell
        ys = self.y0 + (np.arange(ny) + 0.5) * self.cell
        return np.meshgrid(xs, ys)


def kernel_density(
    points: Geoms,
    *,
    bandwidth: float,
    cell: float,
    extent: Geoms | None = None,
    weights: NDArray[np.float64] | None = None,
    crs: Any = None,
) -> DensitySurface:
    """Gaussian kernel density of ``points`` (per km²) on ``cell``-metre squares.

    ``bandwidth`` is the kernel's standard deviation in metres; ``extent`` (default: the points
    grown by 4 bandwidths) sets the raster's bounds; ``crs`` the projected CRS to work in
    (default: :func:`projected_crs` of the points). The surface integrates to the number of
    points (or the sum of ``weights``) when the extent holds the kernels.

    >>> import geopandas as gpd, shapely
    >>> pts = gpd.GeoSeries([shapely.Point(500000, 3500000)] * 4, crs=4545)
    >>> s = kernel_density(pts, bandwidth=200, cell=50)
    >>> round(float(s.values.sum() * (s.cell / 1000) ** 2), 2)
    4.0
    """
    work = _working_crs(points, extent, crs)
    xy = _points_xy(points, work)
    w = _checked_weights(weights, len(xy))
    _check_lengths(bandwidth, cell)
    bounds = _extent_bounds(extent, work, xy, bandwidth)
    x0, y0, nx, ny = _raster(bounds, cell)
    values = _density(xy, w, x0, y0, nx, ny, cell, bandwidth)
    return DensitySurface(values, x0, y0, float(cell), float(bandwidth), work)


def _working_crs(points: Geoms, extent: Geoms | None, crs: Any) -> CRS:
    _require_crs(points, "points")
    if extent is not None:
        _require_crs(extent, "extent")
    work = (
        CRS.from_user_input(crs)
        if crs is not None
        else projected_crs(points if len(points) else extent)
    )  # type: ignore[arg-type]
    if not work.is_projected:
        raise HotspotCRSError(f"kernel density needs a projected CRS, got {work.name}")
    return work


def _points_xy(points: Geoms, work: CRS) -> NDArray[np.float64]:
    geoms = points.geometry.to_crs(work)
    kinds = shapely.get_type_id(geoms.values)
    bad = np.flatnonzero((kinds != 0) | shapely.is_empty(geoms.values))
    if bad.size:
        raise HotspotInputError(f"points: row {points.index[bad[0]]!r} is not a non-empty point")
    return shapely.get_coordinates(geoms.values)[:, :2]


def _checked_weights(weights: NDArray[np.float64] | None, n: int) -> NDArray[np.float64]:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise HotspotInputError(f"weights must be {n} finite non-negative numbers")
    return w


def _check_lengths(bandwidth: float, cell: float) -> None:
    for name, v in (("bandwidth", bandwidth), ("cell", cell)):
        if not (np.isfinite(v) and v > 0):
            raise HotspotInputError(f"{name} must be a positive number of metres, got {v!r}")


def _extent_bounds(
    extent: Geoms | None, work: CRS, xy: NDArray[np.float64], bandwidth: float
) -> tuple[float, float, float, float]:
    if extent is not None:
        minx, miny, maxx, maxy = extent.geometry.to_crs(work).total_bounds
        return float(minx), float(miny), float(maxx), float(maxy)
    if not len(xy):
        raise HotspotInputError("no points and no extent: nothing to size the raster by")
    pad = _CUTOFF * bandwidth
    (minx, miny), (maxx, maxy) = xy.min(axis=0) - pad, xy.max(axis=0) + pad
    return float(minx), float(miny), float(maxx), float(maxy)


def _raster(
    bounds: tuple[float, float, float, float], cell: float
) -> tuple[float, float, int, int]:
    minx, miny, maxx, maxy = bounds
    nx, ny = max(1, int(np.ceil((maxx - minx) / cell))), max(1, int(np.ceil((maxy - miny) / cell)))
    if nx * ny > 25_000_000:
        raise HotspotInputError(f"raster of {nx} x {ny} cells is too large; use a larger cell")
    return minx, miny, nx, ny


def _density(
    xy: NDArray[np.float64],
    w: NDArray[np.float64],
    x0: float,
    y0: float,
    nx: int,
    ny: int,
    cell: float,
    h: float,
) -> NDArray[np.float64]:
    # exact sum over the points within the cut-off of each cell centre (sparse pairs), in row bands
    # so memory stays bounded on county-wide rasters
    out = np.zeros((ny, nx))
    if not len(xy):
        return out
    tree = cKDTree(xy)
    xs = x0 + (np.arange(nx) + 0.5) * cell
    band = max(1, 2_000_000 // max(nx, 1))
    for r0 in range(0, ny, band):
        ys = y0 + (np.arange(r0, min(ny, r0 + band)) + 0.5) * cell
        cx, cy = np.meshgrid(xs, ys)
        centres = cKDTree(np.column_stack([cx.ravel(), cy.ravel()]))
        d = centres.sparse_distance_matrix(tree, _CUTOFF * h, output_type="coo_matrix")
        k = sparse.coo_matrix((np.exp(-0.5 * (d.data / h) ** 2), (d.row, d.col)), shape=d.shape)
        out[r0 : r0 + len(ys)] = (k @ w).reshape(len(ys), nx)
    return out * 1e6 / (2 * np.pi * h * h)


def zonal_mean(surface: DensitySurface, polygons: Geoms) -> NDArray[np.float64]:
    """Mean density of the cells whose centres fall in each polygon (the nearest cell to the
    polygon's representative point when none does), by position."""
    _require_crs(polygons, "polygons")
    geoms = polygons.geometry.to_crs(surface.crs).values
    cx, cy = surface.centres()
    centres = shapely.points(cx.ravel(), cy.ravel())
    poly_i, cell_i = shapely.STRtree(centres).query(geoms, predicate="contains")
    flat = surface.values.ravel()
    sums = np.bincount(poly_i, weights=flat[cell_i], minlength=len(geoms))
    counts = np.bincount(poly_i, minlength=len(geoms))
    out = np.divide(sums, counts, out=np.full(len(geoms), np.nan), where=counts > 0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        out[empty] = _value_at(surface, shapely.point_on_surface(geoms[empty]))
    return out


def _value_at(surface: DensitySurface, pts: NDArray[np.object_]) -> NDArray[np.float64]:
    xy = shapely.get_coordinates(pts)
    ny, nx = surface.values.shape
    col = np.clip(((xy[:, 0] - surface.x0) // surface.cell).astype(int), 0, nx - 1)
    row = np.clip(((xy[:, 1] - surface.y0) // surface.cell).astype(int), 0, ny - 1)
    return surface.values[row, col]


def surface_cells(
    surface: DensitySurface, *, min_value: float = 0.0, to_crs: Any = 4490
) -> gpd.GeoDataFrame:
    """Cells with density above ``min_value`` as square polygons with a ``density`` column."""
    cx, cy = surface.centres()
    keep = surface.values.ravel() > min_value
    half = surface.cell / 2
    x, y = cx.ravel()[keep], cy.ravel()[keep]
    squares = shapely.box(x - half, y - half, x + half, y + half)
    frame = gpd.GeoDataFrame(
        {"density": surface.values.ravel()[keep]}, geometry=squares, crs=surface.crs
    )
    return frame.to_crs(to_crs) if to_crs is not None else frame
