"""``python -m etl redraw``: redraw grids on any polygon file, without the database.

    python -m etl redraw blocks.gpkg --households hh --parent community --band 300,500 \\
        --seed 1 --out grids.gpkg

The input is street blocks (polygons that tile the area) or building footprints (polygons that
mostly touch nothing); ``--as auto`` tells them apart by how many features share a boundary.
Buildings become atoms through the Voronoi cells of their representative points, clipped to
their parent's hull, so grids still tile the built-up area. Every output feature is an input
feature with ``grid_code`` (parent code + 3-digit sequence, west→east, north→south),
``grid_households`` and ``grid_status``; a GeoPackage also gets a ``grids`` layer. The summary
ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from etl.errors import CRSMissingError, LoadError
from etl.readers import read_source
from geo.planner import Plan, PlannerError, assign_codes, redraw

DEFAULT_PREFIX = "000000000000"
TOUCH_SHARE = 0.5  # blocks: at least half the features share a boundary with another
COVER_SHARE = 0.6  # … and the features cover 60 % of their hull (city footprints: 20-40 %)
HULL_MARGIN_M = 30.0


class RedrawInputError(LoadError):
    """The input file lacks what a redraw needs (field, geometry, band)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("redraw", help="redraw grids of a polygon file (blocks or buildings)")
    p.add_argument("input", help="GeoPackage, Shapefile, GeoJSON… of blocks or buildings")
    p.add_argument("--layer", help="layer to read (GeoPackage)")
    p.add_argument("--households", default="households", help="household field")
    p.add_argument("--residents", default=None, help="resident field (optional)")
    p.add_argument("--parent", default=None, help="field grids must not cross (e.g. community)")
    p.add_argument("--band", default="300,500", help="household band LOW,HIGH (default 300,500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same plan)")
    p.add_argument("--crs", default=None, help="CRS when the file states none (e.g. 4490)")
    p.add_argument("--as", dest="kind", choices=["auto", "blocks", "buildings"], default="auto")
    p.add_argument(
        "--code-prefix",
        default=DEFAULT_PREFIX,
        help="digits before the 3-digit sequence when --parent values are not digit codes",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a grid breaks the band")
    p.add_argument("--out", required=True, help="output file (.gpkg, .shp, .geojson)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    band = _band(args.band)
    frame = _read(args)
    kind = _kind(frame) if args.kind == "auto" else args.kind
    try:
        atoms, atom_of = _atoms(frame, kind, args)
        plan = redraw(
            atoms, band=band, parent_col="parent" if args.parent else None, seed=args.seed
        )
    except PlannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    codes = _codes(plan, args.code_prefix)
    if kind == "buildings":
        plan = _name_sites(plan, atom_of)
    out = _output(frame, plan, atom_of, codes)
    grids = _grid_layer(plan, codes)
    _write(out, grids, Path(args.out))
    summary = _summary(args, kind, frame, plan, codes, time.perf_counter() - started)
    _print(summary, plan, codes)
    return 1 if args.strict and summary["violations"] else 0


def _band(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise RedrawInputError(f"--band {text!r}: give LOW,HIGH households, e.g. 300,500") from None
    if not 0 <= low <= high:
        raise RedrawInputError(f"--band {text!r}: need 0 <= LOW <= HIGH")
    return low, high


def _read(args: argparse.Namespace) -> gpd.GeoDataFrame:
    source = read_source(args.input, layer=args.layer)
    frame = source.frame
    if not isinstance(frame, gpd.GeoDataFrame):
        raise RedrawInputError(f"{args.input}: no polygon geometry found")
    crs = source.stated_crs or (CRS.from_user_input(_crs_arg(args.crs)) if args.crs else None)
    if crs is None:
        raise CRSMissingError(
            f"{args.input}: the file states no coordinate system; give one with --crs "
            "(4326 WGS 84, 4490 CGCS2000, 4545 a Gauss-Krüger zone)"
        )
    frame = frame.set_crs(crs, allow_override=True)
    _check_lonlat(frame, args.input)
    tiny = 1e-7 if frame.crs.is_geographic else 0.01  # about a centimetre
    frame = frame.set_geometry(_repaired(np.asarray(frame.geometry.values), tiny))
    _require(frame, args, [args.households] + [f for f in (args.parent, args.residents) if f])
    polygons = np.isin(shapely.get_type_id(frame.geometry.values), [3, 6])  # (Multi)Polygon
    if not polygons.all():
        raise RedrawInputError(
            f"{args.input}: feature {np.flatnonzero(~polygons)[0]} is not a polygon"
        )
    hh = pd.to_numeric(frame[args.households], errors="coerce")
    if hh.isna().any() or (hh < 0).any():
        row = int(np.flatnonzero(hh.isna() | (hh < 0))[0])
        raise RedrawInputError(
            f"{args.input}: feature {row}: {args.households} = "
            f"{frame[args.households].iloc[row]!r} is not a number >= 0"
        )
    return frame.reset_index(drop=True).assign(**{args.households: hh.to_numpy()})


def _check_lonlat(frame: gpd.GeoDataFrame, path: str) -> None:
    if not frame.crs.is_geographic:
        return
    west, south, east, north = frame.total_bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise RedrawInputError(
            f"{path}: coordinates reach ({west:.0f}, {south:.0f})–({east:.0f}, {north:.0f}), "
            f"outside longitude/latitude, but the CRS is {frame.crs.to_string()}: give the "
            "right one with --crs"
        )


def _repaired(geoms: np.ndarray, tiny: float) -> np.ndarray:
    """Invalid polygons (self-touching rings are common in OSM) made valid, polygons kept; a
    footprint with no area (a collapsed ring) becomes a sliver, so it still gets a grid."""
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms = geoms.copy()
        fixed = shapely.make_valid(geoms[bad])
        polygons = shapely.buffer(fixed, 0)
        geoms[bad] = np.where(shapely.is_empty(polygons), shapely.buffer(fixed, tiny), polygons)
    return geoms


def _crs_arg(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _require(frame: gpd.GeoDataFrame, args: argparse.Namespace, fields: list[str]) -> None:
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        have = [c for c in frame.columns if c != frame.geometry.name]
        raise RedrawInputError(f"{args.input}: no field {missing[0]!r}; fields are {have}")


def _kind(frame: gpd.GeoDataFrame) -> str:
    """'blocks' when most features share a boundary with another and together they cover most
    of their convex hull; else 'buildings' (terraced houses share walls but leave the streets
    and yards uncovered)."""
    geoms = np.asarray(frame.geometry.values)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="touches")
    shared = shapely.length(shapely.intersection(geoms[left], geoms[right])) > 0
    touching = np.unique(left[shared]).size >= TOUCH_SHARE * len(geoms)
    hull = shapely.area(shapely.convex_hull(shapely.union_all(geoms)))
    covered = shapely.area(geoms).sum() >= COVER_SHARE * hull
    return "blocks" if touching and covered else "buildings"


def _atoms(
    frame: gpd.GeoDataFrame, kind: str, args: argparse.Namespace
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Atoms for the solver and, per input feature, its atom's id."""
    columns = {
        "households": frame[args.households].to_numpy(float),
        "residents": frame[args.residents].to_numpy(float) if args.residents else 0.0,
        "parent": frame[args.parent].astype(str).to_numpy() if args.parent else "all",
    }
    table = gpd.GeoDataFrame(columns, geometry=frame.geometry.values, crs=frame.crs)
    if kind == "blocks":
        return table, np.asarray(table.index)
    atoms, site = _voronoi_atoms(table)
    return atoms, np.asarray(atoms.index)[site]


def _voronoi_atoms(table: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """One atom per building site (buildings sharing a representative point form one site):
    its Voronoi cell clipped to the parent's hull (buffered), so atoms tile the area."""
    work = table.estimate_utm_crs() if table.crs.is_geographic else table.crs
    metric = table.to_crs(work)
    xy = np.round(shapely.get_coordinates(metric.representative_point().values), 2)
    keys = pd.DataFrame({"parent": table["parent"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    site = keys.groupby(["parent", "x", "y"], sort=True).ngroup().to_numpy()
    sums = table.drop(columns="geometry").assign(site=site).groupby("site")
    atoms = sums[["households", "residents"]].sum().join(sums["parent"].first())
    first = pd.Series(np.arange(len(site))).groupby(site).first().to_numpy()
    cells = np.empty(len(atoms), dtype=object)
    for _, group in atoms.groupby("parent"):
        members = group.index.to_numpy()
        hull = shapely.convex_hull(shapely.union_all(metric.geometry.values[first[members]]))
        area = shapely.buffer(hull, HULL_MARGIN_M)
        cells[members] = _cells(xy[first[members]], area)
    frame = gpd.GeoDataFrame(atoms, geometry=cells, crs=work).to_crs(table.crs)
    frame.index = pd.Index([f"s{i}" for i in frame.index], name="site")
    return frame, site


def _cells(points: np.ndarray, area: Any) -> np.ndarray:
    if len(points) == 1:
        return np.array([area], dtype=object)
    cells = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=area, ordered=True)
    return shapely.intersection(np.asarray(cells.geoms), area)


def _name_sites(plan: Plan, atom_of: np.ndarray) -> Plan:
    """Reasons name input features ("feature 12"), not the internal site ids."""
    rows = pd.Series(np.arange(len(atom_of))).groupby(atom_of).agg(list)

    def named(match: re.Match[str]) -> str:
        found = rows.get(match.group(1), [])
        return "feature " + ", ".join(map(str, found)) if len(found) else match.group(0)

    violations = [
        replace(v, reason=re.sub(r"block (s\d+)", named, v.reason)) for v in plan.violations
    ]
    return replace(plan, violations=violations)


def _codes(plan: Plan, prefix: str) -> pd.Series:
    """District label → code: a digit parent code + sequence, else ``parent-sequence``."""
    districts = plan.districts
    parents = districts["parent"] if "parent" in districts else pd.Series("all", districts.index)
    parts = []
    for n, (parent, group) in enumerate(districts.groupby(parents, sort=True)):
        digits = str(parent).isdigit()
        base = str(parent) if digits else prefix if parent == "all" else f"{n + 1:012d}"
        codes = assign_codes(group, parent_code=base)
        parts.append(codes if digits or parent == "all" else f"{parent}-" + codes.str[-3:])
    return pd.concat(parts)


def _output(
    frame: gpd.GeoDataFrame, plan: Plan, atom_of: np.ndarray, codes: pd.Series
) -> gpd.GeoDataFrame:
    grid = plan.assignment.reindex(atom_of).to_numpy()
    out = frame.copy()
    out["grid_code"] = codes.reindex(grid).to_numpy()
    out["grid_households"] = plan.districts["households"].reindex(grid).to_numpy()
    out["grid_status"] = plan.districts["status"].reindex(grid).to_numpy()
    return out


def _grid_layer(plan: Plan, codes: pd.Series) -> gpd.GeoDataFrame:
    d = plan.districts
    keep = [c for c in ("households", "residents", "status", "polsby_popper") if c in d]
    frame = gpd.GeoDataFrame(d[keep], geometry=d.geometry, crs=d.crs)
    frame.insert(0, "grid_code", codes.reindex(d.index).to_numpy())
    return frame.reset_index(drop=True)


def _write(out: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if path.suffix.lower() == ".gpkg":
        pyogrio.write_dataframe(out, path, layer="features", driver="GPKG")
        pyogrio.write_dataframe(grids, path, layer="grids", driver="GPKG", append=True)
        return
    pyogrio.write_dataframe(out, path, encoding="UTF-8")


def _summary(
    args: argparse.Namespace,
    kind: str,
    frame: gpd.GeoDataFrame,
    plan: Plan,
    codes: pd.Series,
    seconds: float,
) -> dict[str, Any]:
    pp = plan.districts["polsby_popper"]
    return {
        "input": str(args.input),
        "output": str(args.out),
        "as": kind,
        "features": len(frame),
        "households": float(frame[args.households].sum()),
        "band": list(plan.band),
        "seed": args.seed,
        "grids": len(plan.districts),
        "in_band": int((plan.districts["status"] == "in").sum()),
        "violations": [
            {
                "grid": codes.get(v.district, str(v.district)),
                "kind": v.kind,
                "households": float(v.households),
                "reason": v.reason,
            }
            for v in plan.violations
        ],  # fmt: skip
        "mean_polsby_popper": round(float(pp.mean()), 4),
        "min_polsby_popper": round(float(pp.min()), 4),
        "seconds": round(seconds, 3),
    }


def _print(summary: dict[str, Any], plan: Plan, codes: pd.Series) -> None:
    low, high = summary["band"]
    print(f"{summary['input']}: {summary['features']} {summary['as']}, "
          f"{summary['households']:,.0f} households")  # fmt: skip
    print(f"grids: {summary['grids']} ({summary['in_band']} within {low:g}–{high:g} households)")
    hh = plan.districts["households"]
    print(
        f"households per grid: min {hh.min():,.0f}, median {hh.median():,.0f}, max {hh.max():,.0f}"
    )
    print(f"compactness (Polsby-Popper): mean {summary['mean_polsby_popper']:.3f}, "
          f"min {summary['min_polsby_popper']:.3f}")  # fmt: skip
    for v in summary["violations"]:
        print(f"  {v['grid']} {v['kind']} ({v['households']:,.0f}): {v['reason']}")
    print(f"written: {summary['output']} in {summary['seconds']:.2f} s")
    print(json.dumps(summary, ensure_ascii=False))
