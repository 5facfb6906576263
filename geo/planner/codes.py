"""Standard codes for grids and micro-grids, numbered in reading order.

Rule (Beijing DB11 style, "west→east, north→south"): take each unit's representative point
(``point_on_surface``, always inside the unit) in a projected CRS. Sort the points by northing,
north first. The northernmost point opens row 1; walking south, a point joins the current row
while it lies within ``row_tolerance`` metres of the row's *first* (northernmost) point, else it
opens the next row. Inside a row, units go west→east (easting ascending; ties: north first, then
the label's position). The default ``row_tolerance`` is half the median of √area of the units,
i.e. about half a typical unit's height. Numbers are 3 digits, 001–999, appended to the parent
code (12-digit community → 15-digit grid; 15-digit grid → 18-digit micro-grid).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._crs import to_working, working_crs
from .errors import PlannerInputError

SEQ_DIGITS = 3
MAX_SEQ = 10**SEQ_DIGITS - 1


def reading_order(x: np.ndarray, y: np.ndarray, *, row_tolerance: float) -> np.ndarray:
    """Positions sorted north→south in rows of ``row_tolerance``, west→east inside a row.

    >>> reading_order(np.array([5.0, 0.0, 0.0]), np.array([10.0, 9.0, 0.0]), row_tolerance=2)
    array([1, 0, 2])
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    row = np.zeros(len(y), int)
    top, current = np.inf, -1
    for i in np.lexsort((x, -y)).tolist():
        if top - y[i] > row_tolerance:
            top, current = y[i], current + 1
        row[i] = max(current, 0)
    return np.lexsort((np.arange(len(y)), -y, x, row))


def representative_xy(
    frame: gpd.GeoDataFrame | gpd.GeoSeries, *, crs: Any = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Easting, northing of each unit's representative point, and the default row tolerance."""
    geoms = np.asarray(to_working(frame, working_crs(frame, crs)).values)
    points = shapely.point_on_surface(geoms)
    tolerance = float(np.median(np.sqrt(shapely.area(geoms)))) / 2 if len(geoms) else 0.0
    return shapely.get_x(points), shapely.get_y(points), tolerance


def assign_codes(
    districts: gpd.GeoDataFrame,
    *,
    parent_code: str,
    keep: Mapping[Hashable, str] | None = None,
    reserved: Iterable[str] = (),
    row_tolerance: float | None = None,
    crs: Any = None,
) -> pd.Series:
    """Codes ``parent_code`` + 3-digit sequence for the units of one parent (index = label).

    Labels in ``keep`` keep their code (entries for absent labels are ignored, so their numbers
    become free unless listed in ``reserved``); the others take the free numbers in reading
    order (see the module docstring).

    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.box(1, 1, 2, 2), shapely.box(0, 1, 1, 2),
    ...                                shapely.box(0, 0, 2, 1)], index=["a", "b", "c"],
    ...                      crs=3857)
    >>> assign_codes(g, parent_code="110101001001", keep={"c": "110101001001002"}).tolist()
    ['110101001001003', '110101001001001', '110101001001002']
    """
    _check_digits(parent_code, "parent_code")
    kept = _kept_codes(districts.index, parent_code, keep or {})
    taken = {c[-SEQ_DIGITS:] for c in kept.values()}
    taken |= {_check_child(c, parent_code, "reserved code")[-SEQ_DIGITS:] for c in reserved}
    x, y, default_tol = representative_xy(districts, crs=crs)
    order = reading_order(
        x, y, row_tolerance=default_tol if row_tolerance is None else row_tolerance
    )
    labels = [districts.index[i] for i in order.tolist() if districts.index[i] not in kept]
    numbers = (f"{n:0{SEQ_DIGITS}d}" for n in range(1, MAX_SEQ + 1))
    free = [n for n in numbers if n not in taken]
    if len(labels) > len(free):
        raise PlannerInputError(
            f"parent {parent_code}: {len(labels)} units need new codes but only {len(free)} of "
            f"{MAX_SEQ} sequence numbers are free"
        )
    codes = {**kept, **{label: parent_code + n for label, n in zip(labels, free, strict=False)}}
    return pd.Series(
        [codes[label] for label in districts.index], index=districts.index, name="code"
    )


def assign_nested_codes(
    children: gpd.GeoDataFrame,
    *,
    parent_col: str,
    parent_codes: Mapping[Hashable, str],
    keep: Mapping[Hashable, str] | None = None,
    row_tolerance: float | None = None,
    crs: Any = None,
) -> pd.Series:
    """``assign_codes`` for every parent at once (e.g. micro-grids under their grids).

    >>> import geopandas as gpd, shapely
    >>> cells = gpd.GeoDataFrame({"grid": ["g1", "g1", "g2"]}, index=["m1", "m2", "m3"],
    ...                          geometry=[shapely.box(x, 0, x + 1, 1) for x in range(3)],
    ...                          crs=3857)
    >>> assign_nested_codes(cells, parent_col="grid",
    ...                     parent_codes={"g1": "110101001001001", "g2": "110101001001002"}
    ...                     ).tolist()
    ['110101001001001001', '110101001001001002', '110101001001002001']
    """
    if parent_col not in children.columns:
        raise PlannerInputError(f"children have no column {parent_col!r}")
    parts = []
    for parent, group in children.groupby(parent_col, sort=True):
        if parent not in parent_codes:
            raise PlannerInputError(f"no code for parent {parent!r} in parent_codes")
        parts.append(
            assign_codes(
                group,
                parent_code=parent_codes[parent],
                keep={k: v for k, v in (keep or {}).items() if k in group.index},
                row_tolerance=row_tolerance,
                crs=crs,
            )
        )
    return pd.concat(parts).reindex(children.index) if parts else pd.Series(dtype=object)


def _kept_codes(
    labels: pd.Index, parent_code: str, keep: Mapping[Hashable, str]
) -> dict[Hashable, str]:
    kept = {
        label: _check_child(code, parent_code, f"keep[{label!r}]")
        for label, code in keep.items()
        if label in labels
    }
    seen: dict[str, Hashable] = {}
    for label, code in kept.items():
        if code in seen:
            raise PlannerInputError(f"keep gives code {code} to both {seen[code]!r} and {label!r}")
        seen[code] = label
    return kept


def _check_child(code: str, parent_code: str, what: str) -> str:
    _check_digits(code, what)
    if len(code) != len(parent_code) + SEQ_DIGITS or not code.startswith(parent_code):
        raise PlannerInputError(
            f"{what} = {code} is not a {len(parent_code) + SEQ_DIGITS}-digit code under "
            f"parent {parent_code}"
        )
    if code.endswith("0" * SEQ_DIGITS):
        raise PlannerInputError(f"{what} = {code}: sequence 000 is not a valid number")
    return code


def _check_digits(code: str, what: str) -> None:
    if not isinstance(code, str) or not code.isdigit():
        raise PlannerInputError(f"{what} must be a string of digits, got {code!r}")
