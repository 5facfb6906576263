"""Coordinate systems met in China: GCJ-02, BD-09, WGS 84, CGCS2000 and its Gauss-Krüger zones.

GCJ-02 (Amap, Tencent) and BD-09 (Baidu) are obfuscated lon/lat systems with no EPSG code, so
PROJ cannot convert them; the formulas here are the public reverse-engineered ones ("Krasovsky
1940" constants a = 6378245.0, ee = 0.00669342162296594323; BD-09 with x_pi = pi * 3000 / 180).

Outside China GCJ-02 is the identity. "China" is the bounding box every public implementation
uses (lon 72.004-137.8347, lat 0.8293-55.8271; see :func:`in_china_bbox`), so Hong Kong, Taiwan
and parts of neighbouring countries are offset too, exactly as the providers' data are.

Everything stored by the project is EPSG:4490 (CGCS2000 lon/lat). GCJ-02 and BD-09 data are
converted to WGS 84 lon/lat and then labelled EPSG:4490 without a datum shift: the two datums
differ by centimetres, far below the metre-level accuracy of the GCJ-02 inversion's source data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CHINA_LONLAT_BOUNDS",
    "STORAGE_CRS",
    "CRSConflictError",
    "CRSError",
    "MissingCRSError",
    "UnknownCRSError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "check_lonlat_range",
    "detect_swapped_lonlat",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "in_china_bbox",
    "to_storage_crs",
    "transform_geometries",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

STORAGE_CRS = pyproj.CRS.from_epsg(4490)
#: (min lon, min lat, max lon, max lat) of mainland China, used to spot swapped lon/lat.
CHINA_LONLAT_BOUNDS = (73.0, 3.0, 136.0, 54.0)

_A = 6378245.0  # semi-major axis of the Krasovsky 1940 ellipsoid, as the GCJ-02 formula uses
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0
_GCJ_BBOX = (72.004, 0.8293, 137.8347, 55.8271)  # the public out_of_china rule
_INVERSE_TOL_DEG = 1e-10  # fixed-point iteration stops below this (~0.01 mm)
_INVERSE_MAX_ITER = 30

Offset = Literal["GCJ02", "BD09"]
Source: TypeAlias = "Offset | pyproj.CRS"
CRSLike: TypeAlias = "str | int | pyproj.CRS"
Coords: TypeAlias = "tuple[NDArray[np.float64], NDArray[np.float64]]"

_OFFSET_ALIASES: dict[str, Offset] = {
    "GCJ02": "GCJ02",
    "GCJ02LL": "GCJ02",
    "BD09": "BD09",
    "BD09LL": "BD09",
}
# File formats cannot label GCJ-02/BD-09 data; such files arrive as WGS 84 or CGCS2000 lon/lat.
_OFFSET_COMPATIBLE_LABELS = ("EPSG:4326", "OGC:CRS84", "EPSG:4490")


class CRSError(ValueError):
    """Base class for coordinate reference system problems."""


class MissingCRSError(CRSError):
    """Neither the data nor the caller says which CRS the coordinates are in."""


class CRSConflictError(CRSError):
    """The data's own CRS and the caller's ``source_crs`` disagree."""


class UnknownCRSError(CRSError):
    """A CRS name or code that is neither GCJ-02, BD-09 nor parsable by pyproj."""


# --- point formulas ---------------------------------------------------------------------------


def _as_float(lon: ArrayLike, lat: ArrayLike) -> Coords:
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return x, y


def in_china_bbox(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Mask of points inside the box where GCJ-02 applies an offset.

    >>> in_china_bbox([116.4, 2.35], [39.9, 48.86]).tolist()
    [True, False]
    """
    x, y = _as_float(lon, lat)
    min_x, min_y, max_x, max_y = _GCJ_BBOX
    return (x >= min_x) & (x <= max_x) & (y >= min_y) & (y <= max_y)


def _gcj_offset(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Coords:
    """GCJ-02 minus WGS 84 at a WGS 84 position, in degrees (zero outside the box)."""
    x, y = lon - 105.0, lat - 35.0
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = np.radians(lat)
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    inside = in_china_bbox(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """WGS 84 lon/lat to GCJ-02 (identity outside the China box).

    >>> lon, lat = wgs84_to_gcj02(116.377817, 39.911954)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.384047, 39.913345)
    """
    x, y = _as_float(lon, lat)
    dx, dy = _gcj_offset(x, y)
    return x + dx, y + dy


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """GCJ-02 lon/lat to WGS 84, the exact inverse of :func:`wgs84_to_gcj02`.

    Solves ``wgs84_to_gcj02(w) == g`` by fixed-point iteration (w <- w - (gcj(w) - g)); the
    offset changes slowly with position, so each step gains about two digits and a few steps
    reach ~1e-10 degrees. The common one-step formula ``g - offset(g)`` is off by up to ~5 m.

    >>> lon, lat = gcj02_to_wgs84(*wgs84_to_gcj02(108.0, 32.0))
    >>> abs(float(lon) - 108.0) < 1e-9 and abs(float(lat) - 32.0) < 1e-9
    True
    """
    gx, gy = _as_float(lon, lat)
    wx, wy = gx.copy(), gy.copy()
    for _ in range(_INVERSE_MAX_ITER):
        fx, fy = wgs84_to_gcj02(wx, wy)
        ex, ey = fx - gx, fy - gy
        wx, wy = wx - ex, wy - ey
        if not np.any((np.abs(ex) > _INVERSE_TOL_DEG) | (np.abs(ey) > _INVERSE_TOL_DEG)):
            break
    return wx, wy


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """GCJ-02 lon/lat to BD-09 (Baidu's public formula, applied everywhere).

    >>> lon, lat = gcj02_to_bd09(123.0, 45.0)
    >>> round(float(lon), 5), round(float(lat), 5)
    (123.00636, 45.00637)
    """
    x, y = _as_float(lon, lat)
    z = np.hypot(x, y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_approx(x: NDArray[np.float64], y: NDArray[np.float64]) -> Coords:
    x, y = x - 0.0065, y - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """BD-09 lon/lat to GCJ-02, the exact inverse of :func:`gcj02_to_bd09`.

    Starts from the usual closed-form approximation (good to ~1e-6 degrees) and refines it with
    the same fixed-point iteration as :func:`gcj02_to_wgs84`, so round trips close.

    >>> lon, lat = bd09_to_gcj02(*gcj02_to_bd09(108.0, 32.0))
    >>> abs(float(lon) - 108.0) < 1e-9 and abs(float(lat) - 32.0) < 1e-9
    True
    """
    bx, by = _as_float(lon, lat)
    gx, gy = _bd09_to_gcj02_approx(bx, by)
    for _ in range(_INVERSE_MAX_ITER):
        fx, fy = gcj02_to_bd09(gx, gy)
        ex, ey = fx - bx, fy - by
        gx, gy = gx - ex, gy - ey
        if not np.any((np.abs(ex) > _INVERSE_TOL_DEG) | (np.abs(ey) > _INVERSE_TOL_DEG)):
            break
    return gx, gy


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """WGS 84 lon/lat to BD-09 (via GCJ-02).

    >>> lon, lat = wgs84_to_bd09(123.0, 45.0)
    >>> round(float(lon), 5), round(float(lat), 5)
    (123.01245, 45.00833)
    """
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """BD-09 lon/lat to WGS 84 (via GCJ-02, both steps exact inverses).

    >>> lon, lat = bd09_to_wgs84(*wgs84_to_bd09(108.0, 32.0))
    >>> abs(float(lon) - 108.0) < 1e-9 and abs(float(lat) - 32.0) < 1e-9
    True
    """
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


# --- sanity checks on raw coordinates --------------------------------------------------------


def detect_swapped_lonlat(x: ArrayLike, y: ArrayLike) -> NDArray[np.bool_]:
    """Mask of points that look like (lat, lon) given as (lon, lat) for China.

    A point is flagged when (x, y) is outside :data:`CHINA_LONLAT_BOUNDS` but (y, x) is inside.

    >>> detect_swapped_lonlat([108.0, 32.0], [32.0, 108.0]).tolist()
    [False, True]
    """
    xs, ys = _as_float(x, y)
    return ~_in_bounds(xs, ys, CHINA_LONLAT_BOUNDS) & _in_bounds(ys, xs, CHINA_LONLAT_BOUNDS)


def check_lonlat_range(
    x: ArrayLike,
    y: ArrayLike,
    *,
    bounds: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0),
) -> NDArray[np.bool_]:
    """Mask of coordinates that are not finite or fall outside ``bounds`` (lon/lat by default).

    Pass ``bounds=CHINA_LONLAT_BOUNDS`` to flag points outside China.

    >>> check_lonlat_range([108.0, 200.0, float("nan")], [32.0, 10.0, 1.0]).tolist()
    [False, True, True]
    """
    xs, ys = _as_float(x, y)
    return ~(np.isfinite(xs) & np.isfinite(ys) & _in_bounds(xs, ys, bounds))


def _in_bounds(
    x: NDArray[np.float64], y: NDArray[np.float64], bounds: tuple[float, float, float, float]
) -> NDArray[np.bool_]:
    min_x, min_y, max_x, max_y = bounds
    return (x >= min_x) & (x <= max_x) & (y >= min_y) & (y <= max_y)


# --- geometries and GeoDataFrames ------------------------------------------------------------


def _resolve_source(source: CRSLike) -> Source:
    """Map a user's CRS spelling to "GCJ02", "BD09" or a pyproj CRS."""
    if isinstance(source, str):
        key = source.upper().replace("-", "").replace("_", "").replace(" ", "")
        if key in _OFFSET_ALIASES:
            return _OFFSET_ALIASES[key]
    try:
        return pyproj.CRS.from_user_input(source)
    except pyproj.exceptions.CRSError as exc:
        raise UnknownCRSError(
            f"source CRS {source!r} is neither 'GCJ02', 'BD09' nor a CRS pyproj understands "
            f"(e.g. 4326, 4490, 'EPSG:4545'): {exc}"
        ) from exc


def _coordinate_function(
    source: Source,
) -> Callable[[NDArray[np.float64], NDArray[np.float64]], Coords]:
    if source == "GCJ02":
        return gcj02_to_wgs84
    if source == "BD09":
        return bd09_to_wgs84
    transformer = pyproj.Transformer.from_crs(source, STORAGE_CRS, always_xy=True)
    return lambda x, y: transformer.transform(x, y, errcheck=True)


def _keep_z(
    func: Callable[[NDArray[np.float64], NDArray[np.float64]], Coords],
) -> Callable[..., tuple[NDArray[np.float64], ...]]:
    """Wrap an x, y function for shapely.transform(interleaved=False); z passes through."""

    def apply(x: NDArray[np.float64], y: NDArray[np.float64], *z: NDArray[np.float64]):
        return (*func(x, y), *z)

    return apply


def transform_geometries(
    geoms: ArrayLike | gpd.GeoSeries, *, source: CRSLike
) -> NDArray[np.object_]:
    """Transform geometries from ``source`` to EPSG:4490 lon/lat; returns a shapely array.

    ``source`` is "GCJ02"/"GCJ-02", "BD09"/"BD-09" or anything pyproj parses (EPSG code, WKT,
    "EPSG:4545"). Any CRS label the geometries carry is ignored; :func:`to_storage_crs` is the
    checked entry point. Z values are kept unchanged.

    >>> import shapely
    >>> out = transform_geometries([shapely.Point(108.0, 32.0)], source="GCJ02")
    >>> 0.001 < 108.0 - out[0].x < 0.01
    True
    """
    func = _keep_z(_coordinate_function(_resolve_source(source)))
    arr = np.asarray(geoms, dtype=object)
    return shapely.transform(arr, func, include_z=None, interleaved=False)


def _labels_agree(data_crs: pyproj.CRS, source: Source) -> bool:
    if isinstance(source, pyproj.CRS):
        return bool(data_crs.equals(source, ignore_axis_order=True))
    return any(
        data_crs.equals(label, ignore_axis_order=True) for label in _OFFSET_COMPATIBLE_LABELS
    )


def _storage_source(data_crs: pyproj.CRS | None, source_crs: CRSLike | None) -> Source:
    """Decide which CRS the data are in: the data's own label, or the caller's explicit one."""
    if source_crs is None:
        if data_crs is None:
            raise MissingCRSError(
                "the GeoDataFrame has no CRS and no source_crs was given; pass "
                "source_crs='GCJ02' (Amap/Tencent), 'BD09' (Baidu), 4326 (WGS 84/GPS), "
                "4490 (CGCS2000) or a Gauss-Krüger zone such as 4545"
            )
        return data_crs
    source = _resolve_source(source_crs)
    if data_crs is not None and not _labels_agree(data_crs, source):
        raise CRSConflictError(
            f"the GeoDataFrame is labelled {data_crs.to_string()} but source_crs={source_crs!r}; "
            "fix the label (gdf.set_crs(..., allow_override=True)) or drop source_crs"
        )
    return source


def to_storage_crs(gdf: gpd.GeoDataFrame, *, source_crs: CRSLike | None = None) -> gpd.GeoDataFrame:
    """Return a copy of ``gdf`` with its active geometry in the storage CRS, EPSG:4490.

    The source is ``gdf.crs`` or ``source_crs`` (see :func:`transform_geometries` for what it
    accepts). If both are set they must agree, except that ``source_crs`` "GCJ02"/"BD09" is
    accepted over a WGS 84/CGCS2000 lon/lat label, because file formats cannot express those
    systems (a GeoJSON of Amap data reads as EPSG:4326). GCJ-02/BD-09 become WGS 84 lon/lat,
    labelled EPSG:4490 (centimetres apart).

    >>> import geopandas as gpd, shapely
    >>> gdf = gpd.GeoDataFrame(geometry=[shapely.Point(500000.0, 3540000.0)])
    >>> out = to_storage_crs(gdf, source_crs="EPSG:4545")
    >>> out.crs.to_epsg(), round(float(out.geometry.x.iloc[0]), 3)
    (4490, 108.0)
    """
    source = _storage_source(gdf.crs, source_crs)
    if isinstance(source, pyproj.CRS) and source.equals(STORAGE_CRS, ignore_axis_order=True):
        return gdf.set_crs(STORAGE_CRS, allow_override=True)
    geoms = transform_geometries(gdf.geometry.values, source=source)
    out = gdf.copy()
    out[gdf.geometry.name] = gpd.GeoSeries(geoms, index=gdf.index, crs=STORAGE_CRS)
    return out.set_crs(STORAGE_CRS, allow_override=True)
