"""Grid plans around the pure solver: read a unit, propose, edit, save, approve, export.

A plan is building → grid (→ micro-grid) plus, for empty street blocks, block → grid. Grid
shapes are always rebuilt from that the same way (:func:`grid_tiles`): a block whose buildings
share one grid goes whole to it; a block split between grids is cut along the Voronoi cells of
its buildings. So a proposal from ``geo.planner.redraw`` and a hand-edited plan tile the
community alike, without gaps or overlaps.

Approval makes a plan current in one transaction: old grid and micro-grid rows get
``valid_to = effective date`` (history stays), new rows start ``valid_from`` that date, grids
identical to the current ones (same code, same shape, same micro-grids) are left untouched,
staff of retired grids move to the successor holding most of their households, and buildings,
events, patrols and totals are reassigned.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from sqlalchemy import Connection, Engine, text

from etl.db import transaction
from etl.privacy import neutralise_frame
from etl.queries import Scope
from etl.queries import planner as q
from etl.write import copy_frame, reassign_all, refresh_totals
from geo.planner import (
    Plan,
    analyse,
    assign_codes,
    assign_nested_codes,
    blocks_from_roads,
    buildings_to_blocks,
    compactness,
    nest_microgrids,
    redraw,
)

SRID = 4490
NO_BAND = (0.0, 1e12)


class PlanError(ValueError):
    """A plan cannot be made, saved or approved; the message says which unit or plan and why."""


# --- the area being planned ---------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """One unit and what the planner needs inside it (EPSG:4490)."""

    unit: dict[str, Any]
    communities: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    microgrids: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    used_codes: frozenset[str] = field(default_factory=frozenset)


def read_area(conn: Connection, scope: Scope, code: str) -> Area:
    """The community, township or county ``code``: its communities, current grids and
    micro-grids, buildings (with their current codes) and roads."""
    unit = q.unit_info(conn, scope, code)
    if unit is None:
        raise PlanError(f"unit {code}: no current unit with this code in your jurisdiction")
    if unit["level"] not in q.PLANNABLE_LEVELS:
        raise PlanError(f"unit {code} is a {unit['level']}: plan a community, township or county")
    communities = q.area_units(conn, scope, code, "community")
    if communities.empty:
        raise PlanError(f"unit {code} ({unit['name']}) holds no community to draw grids in")
    return Area(
        unit=unit,
        communities=communities,
        grids=q.area_units(conn, scope, code, "grid"),
        microgrids=q.area_units(conn, scope, code, "microgrid"),
        buildings=q.area_buildings(conn, scope, code),
        roads=q.area_roads(conn, scope, code),
        used_codes=frozenset(q.codes_ever_used(conn, scope, list(communities.index))),
    )


def street_blocks(area: Area, *, min_area_m2: float = 20.0) -> gpd.GeoDataFrame:
    """Street blocks of every community (roads clipped to it), ids ``<community>:B<n>``, with
    ``community``, ``building_ids`` and ``current`` (the grid holding most of the block's
    households; for an empty block, the grid under its representative point)."""
    parts = []
    for code, row in area.communities.iterrows():
        houses = area.buildings[area.buildings["community"] == code]
        houses = gpd.GeoDataFrame(houses[["households", "residents", "geometry"]], crs=SRID)
        blocks = blocks_from_roads(houses, area.roads, row.geometry, min_area_m2=min_area_m2)
        blocks = _adopt_strays(blocks, houses)
        blocks.index = pd.Index([f"{code}:{b}" for b in blocks.index], name="block")
        parts.append(blocks.assign(community=code))
    blocks = gpd.GeoDataFrame(pd.concat(parts), geometry="geometry", crs=SRID)
    blocks["current"] = _current_labels(blocks, area)
    return blocks


def _adopt_strays(blocks: gpd.GeoDataFrame, houses: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Buildings of the community whose point fell in no block join the nearest block."""
    strays = list(blocks.attrs.get("unassigned_buildings", []))
    if not strays or blocks.empty:
        return blocks
    blocks = blocks.copy()
    near = shapely.STRtree(blocks.geometry.values).nearest(houses.loc[strays].geometry.values)
    members = [list(m) for m in blocks["building_ids"]]
    for building, pos in zip(strays, near.tolist(), strict=True):
        members[pos].append(building)
        for col in ("households", "residents"):
            blocks.iloc[pos, blocks.columns.get_loc(col)] += houses.at[building, col]
        blocks.iloc[pos, blocks.columns.get_loc("n_buildings")] += 1
    blocks["building_ids"] = [tuple(m) for m in members]
    return blocks


def _members(blocks: gpd.GeoDataFrame) -> pd.DataFrame:
    """One row per (block, building)."""
    pairs = [(b, m) for b, ids in blocks["building_ids"].items() for m in ids]
    return pd.DataFrame(pairs, columns=["block", "building"])


def _current_labels(blocks: gpd.GeoDataFrame, area: Area) -> pd.Series:
    out = pd.Series(None, index=blocks.index, dtype=object)
    if area.grids.empty:
        return out
    points = gpd.GeoDataFrame(geometry=blocks.representative_point(), crs=SRID)
    spatial = buildings_to_blocks(points, area.grids[["geometry"]])
    out[:] = spatial.to_numpy()
    pairs = _members(blocks)
    pairs["grid"] = area.buildings["grid"].reindex(pairs["building"]).to_numpy()
    pairs["w"] = area.buildings["households"].reindex(pairs["building"]).to_numpy() + 1e-3
    pairs = pairs.dropna(subset=["grid"])
    if not pairs.empty:
        weights = pairs.groupby(["block", "grid"])["w"].sum().reset_index()
        best = weights.sort_values(["w", "grid"], ascending=[False, True]).drop_duplicates("block")
        out[best["block"].to_numpy()] = best["grid"].to_numpy()
    return out.where(out.notna(), None)


# --- shapes of a plan ---------------------------------------------------------------------------


def _work_crs(frame: gpd.GeoDataFrame) -> CRS:
    """A projected CRS in metres: the CGCS2000 3-degree Gauss-Kruger zone inside China."""
    lon = float(np.mean(frame.to_crs(4326).total_bounds[[0, 2]]))
    if 73 <= lon <= 136:
        return CRS.from_epsg(4534 + (min(max(round(lon / 3) * 3, 75), 135) - 75) // 3)
    return CRS.from_user_input(frame.estimate_utm_crs())


def grid_tiles(
    blocks: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    building_grid: pd.Series,
    block_grid: pd.Series,
) -> gpd.GeoDataFrame:
    """Pieces tiling the blocks, each with one ``grid``: a block whose buildings share a grid
    (or that has none: ``block_grid``) stays whole; a mixed block is cut along the Voronoi cells
    of its buildings' representative points (computed in metres), unioned per grid."""
    work = _work_crs(blocks)
    pieces: list[tuple[Hashable, Hashable, Any]] = []
    for block, ids, geom in zip(blocks.index, blocks["building_ids"], blocks.geometry, strict=True):
        grids = building_grid.reindex(list(ids)).dropna()
        if grids.nunique() <= 1:
            pieces.append((block, grids.iloc[0] if len(grids) else block_grid[block], geom))
            continue
        pieces += _split_block(block, geom, buildings.loc[grids.index], grids, work)
    return gpd.GeoDataFrame(
        {"block": [p[0] for p in pieces], "grid": [p[1] for p in pieces]},
        geometry=[p[2] for p in pieces],
        crs=SRID,
    )


def _split_block(
    block: Hashable, geom: Any, houses: gpd.GeoDataFrame, grids: pd.Series, work: CRS
) -> list[tuple[Hashable, Hashable, Any]]:
    area = gpd.GeoSeries([geom], crs=SRID).to_crs(work).iloc[0]
    xy = shapely.get_coordinates(houses.to_crs(work).representative_point().values)
    xy, first = np.unique(np.round(xy, 3), axis=0, return_index=True)
    owner = grids.to_numpy()[first]
    cells = shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=area, ordered=True)
    clipped = shapely.intersection(np.asarray(cells.geoms), area)
    merged = gpd.GeoDataFrame({"grid": owner}, geometry=clipped, crs=work).dissolve("grid")
    merged = merged.to_crs(SRID)
    return [(block, g, shapely.make_valid(p)) for g, p in merged.geometry.items()]


def _dissolve(tiles: gpd.GeoDataFrame) -> gpd.GeoSeries:
    groups = tiles.groupby("grid").geometry
    geoms = {g: shapely.union_all(np.asarray(s.values)) for g, s in groups}
    return gpd.GeoSeries(geoms, crs=SRID)


# --- proposals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A plan not yet saved: grids and micro-grids (indexed by code), building assignment
    (index building id: community, previous_code, grid_code, microgrid_code, households,
    residents), the block defaults, violations (code, level, kind, households, reason)."""

    unit_code: str
    band: tuple[int, int]
    micro_band: tuple[int, int] | None
    full: bool
    seed: int | None
    locked: tuple[str, ...]
    blocks: gpd.GeoDataFrame
    block_grid: pd.Series
    assignment: pd.DataFrame
    grids: gpd.GeoDataFrame
    microgrids: gpd.GeoDataFrame
    violations: list[dict[str, Any]]
    metrics: dict[str, Any]


def propose(
    area: Area,
    *,
    band: tuple[int, int],
    micro_band: tuple[int, int] | None = None,
    full: bool = False,
    seed: int | None = 0,
    locked: Collection[str] = (),
    blocks: gpd.GeoDataFrame | None = None,
) -> Proposal:
    """Run ``geo.planner.redraw`` on the area's street blocks (minimal change unless ``full``;
    ``locked`` grid codes stay as they are), give codes (kept grids keep theirs; new ones take
    free numbers never used before in the community, west→east, north→south) and nest
    micro-grids when ``micro_band`` is given."""
    blocks = street_blocks(area) if blocks is None else blocks
    has_current = blocks["current"].notna().any()
    started = datetime.now()
    plan = redraw(
        blocks[["households", "residents", "n_buildings", "building_ids", "community", "geometry"]],
        band=band,
        current=blocks["current"] if has_current else None,
        locked=list(locked),
        full=full or not has_current,
        parent_col="community",
        seed=seed,
    )
    codes = _codes_for(plan, area)
    building_grid = _building_labels(plan, blocks).map(codes)
    block_grid = _block_labels(plan, blocks).map(codes)
    reasons = {(codes[v.district], v.kind): v.reason for v in plan.violations}
    solved = {
        "solver_seconds": (datetime.now() - started).total_seconds(),
        **{k: v for k, v in plan.metrics.items() if k != "split_blocks"},
    }
    return assemble(
        area, blocks, building_grid, block_grid, band=band, micro_band=micro_band, full=full,
        seed=seed, locked=tuple(locked), reasons=reasons, extra_metrics=solved,
    )  # fmt: skip


def _codes_for(plan: Plan, area: Area) -> dict[Hashable, str]:
    districts = plan.districts
    out: dict[Hashable, str] = {}
    for community, group in districts.groupby("parent", sort=True):
        keep = {
            label: str(label)
            for label in group.index
            if label in area.grids.index and area.grids.at[label, "parent_code"] == community
        }
        reserved = [c for c in area.used_codes if _is_child(c, str(community))]
        reserved = [c for c in reserved if c not in keep.values()]
        out |= assign_codes(
            group, parent_code=str(community), keep=keep, reserved=reserved
        ).to_dict()
    return out


def _is_child(code: str, parent: str) -> bool:
    return (
        code.isdigit()
        and len(code) == len(parent) + 3
        and code.startswith(parent)
        and not code.endswith("000")
    )


def _building_labels(plan: Plan, blocks: gpd.GeoDataFrame) -> pd.Series:
    if plan.building_assignment is not None:
        return plan.building_assignment
    pairs = _members(blocks)
    return pd.Series(plan.assignment.reindex(pairs["block"]).to_numpy(), index=pairs["building"])


def _block_labels(plan: Plan, blocks: gpd.GeoDataFrame) -> pd.Series:
    labels = plan.assignment.copy()
    if plan.pieces is not None:  # a split block defaults to the grid of its first piece
        first = plan.pieces.reset_index().drop_duplicates("block").set_index("block")["piece"]
        labels = pd.concat(
            [labels, pd.Series(plan.assignment.reindex(first).to_numpy(), first.index)]
        )
    return labels.reindex(blocks.index)


def assemble(
    area: Area,
    blocks: gpd.GeoDataFrame,
    building_grid: pd.Series,
    block_grid: pd.Series,
    *,
    band: tuple[int, int],
    micro_band: tuple[int, int] | None = None,
    full: bool = False,
    seed: int | None = 0,
    locked: tuple[str, ...] = (),
    reasons: Mapping[tuple[str, str], str] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> Proposal:
    """A proposal from any building → grid code assignment (the solver's or a hand edit)."""
    building_grid = building_grid.reindex(area.buildings.index)
    if building_grid.isna().any():
        missing = building_grid.index[building_grid.isna()][0]
        raise PlanError(f"building {area.buildings.at[missing, 'code']} has no grid in the plan")
    tiles = grid_tiles(blocks, area.buildings, building_grid, block_grid)
    grids = _grid_frame(area, tiles, building_grid, band, locked)
    micro, micro_of = _microgrids(area, grids, building_grid, micro_band, seed)
    assignment = pd.DataFrame(
        {
            "community": area.buildings["community"],
            "previous_code": area.buildings["grid"],
            "grid_code": building_grid,
            "microgrid_code": micro_of.reindex(area.buildings.index),
            "households": area.buildings["households"],
            "residents": area.buildings["residents"],
        }
    )
    violations = _violations(grids, "grid", band, reasons or {})
    if micro_band is not None:
        violations += _violations(micro, "microgrid", micro_band, {})
    metrics = _metrics(area, grids, micro, assignment, violations) | dict(extra_metrics or {})
    return Proposal(
        unit_code=area.unit["code"], band=band, micro_band=micro_band, full=full, seed=seed,
        locked=locked, blocks=blocks, block_grid=block_grid, assignment=assignment, grids=grids,
        microgrids=micro, violations=violations, metrics=metrics,
    )  # fmt: skip


def _status(households: pd.Series, band: tuple[float, float]) -> np.ndarray:
    low, high = band
    return np.where(households < low, "under", np.where(households > high, "over", "in"))


def _grid_frame(
    area: Area,
    tiles: gpd.GeoDataFrame,
    building_grid: pd.Series,
    band: tuple[int, int],
    locked: tuple[str, ...],
) -> gpd.GeoDataFrame:
    geoms = _dissolve(tiles)
    sums = area.buildings.groupby(building_grid)[["households", "residents"]].sum()
    counts = building_grid.value_counts()
    codes = geoms.index
    shape = compactness(tiles, tiles["grid"].tolist()).reindex(codes)
    frame = gpd.GeoDataFrame(
        {
            "parent_code": [c[:-3] for c in codes],
            "households": sums["households"].reindex(codes, fill_value=0).astype(int),
            "residents": sums["residents"].reindex(codes, fill_value=0).astype(int),
            "buildings": counts.reindex(codes, fill_value=0).astype(int),
            "polsby_popper": shape["polsby_popper"],
            "area_m2": shape["area_m2"],
            "parts": shapely.get_num_geometries(geoms.values),
            "kept": [c in area.grids.index for c in codes],
            "locked": [c in locked for c in codes],
        },
        geometry=geoms.values,
        index=pd.Index(codes, name="code"),
        crs=SRID,
    )
    frame["status"] = _status(frame["households"], band)
    frame["deviation"] = frame["households"] - sum(band) / 2
    frame["name"] = [_grid_name(area, c) for c in codes]
    return frame


def _grid_name(area: Area, code: str) -> str:
    if code in area.grids.index:
        return str(area.grids.at[code, "name"])
    parent = code[:-3]
    base = area.communities.at[parent, "name"] if parent in area.communities.index else parent
    return f"{base}第{int(code[-3:])}网格"


def _microgrids(
    area: Area,
    grids: gpd.GeoDataFrame,
    building_grid: pd.Series,
    band: tuple[int, int] | None,
    seed: int | None,
) -> tuple[gpd.GeoDataFrame, pd.Series]:
    """Micro-grids: grids whose buildings did not change keep theirs; the others are nested
    afresh, and a new micro-grid with exactly the buildings of an old one keeps its code."""
    empty = gpd.GeoDataFrame(
        {"parent_code": [], "households": [], "name": [], "status": []}, geometry=[], crs=SRID
    )
    if band is None:
        return empty, pd.Series(dtype=object)
    unchanged = _unchanged_grids(area, building_grid)
    kept_micro = area.microgrids[area.microgrids["parent_code"].isin(unchanged)]
    micro_of = area.buildings["microgrid"].where(building_grid.isin(unchanged))
    redo = [c for c in grids.index if c not in unchanged and (building_grid == c).any()]
    parts = [_kept_micro_frame(kept_micro, area, micro_of, band)]
    if redo:
        fresh, fresh_of = _nest(area, grids, building_grid, redo, band, seed)
        parts.append(fresh)
        micro_of = micro_of.combine_first(fresh_of)
    frame = gpd.GeoDataFrame(pd.concat(parts), geometry="geometry", crs=SRID)
    frame["status"] = _status(frame["households"], band)
    return frame, micro_of.dropna()


def _unchanged_grids(area: Area, building_grid: pd.Series) -> list[str]:
    old = area.buildings["grid"]
    out = []
    for code in area.grids.index:
        now, before = building_grid == code, old == code
        has_micro = area.buildings.loc[before, "microgrid"].notna().all()
        if before.any() and now.equals(before) and has_micro:
            out.append(code)
    return out


def _kept_micro_frame(
    micro: gpd.GeoDataFrame, area: Area, micro_of: pd.Series, band: tuple[int, int]
) -> gpd.GeoDataFrame:
    sums = area.buildings.groupby(micro_of)[["households", "residents"]].sum()
    counts = micro_of.value_counts()
    return gpd.GeoDataFrame(
        {
            "parent_code": micro["parent_code"],
            "name": micro["name"],
            "households": sums["households"].reindex(micro.index, fill_value=0).astype(int),
            "residents": sums["residents"].reindex(micro.index, fill_value=0).astype(int),
            "buildings": counts.reindex(micro.index, fill_value=0).astype(int),
            "kept": True,
        },
        geometry=micro.geometry,
        crs=SRID,
    )


def _nest(
    area: Area,
    grids: gpd.GeoDataFrame,
    building_grid: pd.Series,
    redo: list[str],
    band: tuple[int, int],
    seed: int | None,
) -> tuple[gpd.GeoDataFrame, pd.Series]:
    chosen = building_grid[building_grid.isin(redo)]
    plan = Plan(
        assignment=chosen, districts=grids.loc[redo, ["geometry"]], violations=[], metrics={},
        band=band, building_assignment=chosen,
    )  # fmt: skip
    houses = gpd.GeoDataFrame(area.buildings[["households", "residents", "geometry"]], crs=SRID)
    micro = nest_microgrids(plan, houses.loc[chosen.index], band=band, seed=seed)
    districts = micro.districts.to_crs(SRID)  # nested in metres
    keep = _same_members(micro.assignment, area.buildings["microgrid"], districts["parent"])
    codes = assign_nested_codes(
        districts, parent_col="parent", parent_codes={c: c for c in redo}, keep=keep
    )
    frame = gpd.GeoDataFrame(
        {
            "parent_code": districts["parent"].to_numpy(),
            "households": districts["households"].round().astype(int).to_numpy(),
            "residents": districts["residents"].round().astype(int).to_numpy(),
            "buildings": districts["n_buildings"].astype(int).to_numpy(),
            "kept": [codes[i] in keep.values() for i in districts.index],
        },
        geometry=districts.geometry.values,
        index=pd.Index(codes.to_numpy(), name="code"),
        crs=SRID,
    )
    frame["name"] = [f"{grids.at[p, 'name']}第{int(c[-3:])}微网格" for p, c in
                     zip(frame["parent_code"], frame.index, strict=True)]  # fmt: skip
    return frame, micro.assignment.map(codes)


def _same_members(new: pd.Series, old: pd.Series, parent: pd.Series) -> dict[Hashable, str]:
    """New micro-grid label → old code, where both hold exactly the same buildings and the old
    code sits under the new micro-grid's grid."""
    old_sets = old.dropna().groupby(old.dropna()).apply(lambda s: frozenset(s.index))
    by_set = {members: code for code, members in old_sets.items()}
    out: dict[Hashable, str] = {}
    for label, members in new.groupby(new).apply(lambda s: frozenset(s.index)).items():
        code = by_set.get(members)
        if code is not None and code[:-3] == parent.get(label):
            out[label] = code
    return out


def _violations(
    frame: gpd.GeoDataFrame, level: str, band: tuple[int, int], reasons: Mapping[Any, str]
) -> list[dict[str, Any]]:
    low, high = band
    out = []
    for code, row in frame.iterrows():
        if row["status"] != "in":
            edge = (
                f"below the {low} floor"
                if row["status"] == "under"
                else f"above the {high} ceiling"
            )
            why = reasons.get((code, row["status"])) or f"{row['households']} households, {edge}"
            out.append(_violation(code, level, row["status"], row["households"], why))
        if "parts" in frame and row["parts"] > 1:
            why = f"{row['parts']} separate parts"
            out.append(_violation(code, level, "not_contiguous", row["households"], why))
    return out


def _violation(code: Any, level: str, kind: str, households: Any, reason: str) -> dict[str, Any]:
    return {"code": str(code), "level": level, "kind": kind, "households": int(households),
            "reason": reason}  # fmt: skip


def _metrics(
    area: Area,
    grids: gpd.GeoDataFrame,
    micro: gpd.GeoDataFrame,
    assignment: pd.DataFrame,
    violations: list[dict[str, Any]],
) -> dict[str, Any]:
    moved = assignment["previous_code"].notna() & assignment["grid_code"].ne(
        assignment["previous_code"]
    )
    return {
        "n_grids": len(grids),
        "n_microgrids": len(micro),
        "n_grids_before": len(area.grids),
        "n_out_of_band": int((grids["status"] != "in").sum()),
        "n_violations": len(violations),
        "households_total": int(assignment["households"].sum()),
        "buildings_moved": int(moved.sum()),
        "households_moved": int(assignment.loc[moved, "households"].sum()),
        "grids_kept": int(grids["kept"].sum()),
        "mean_polsby_popper": float(grids["polsby_popper"].mean()) if len(grids) else None,
    }


def current_proposal(
    area: Area,
    *,
    band: tuple[int, int],
    micro_band: tuple[int, int] | None = None,
    blocks: gpd.GeoDataFrame | None = None,
) -> Proposal:
    """The current grids as a proposal (for side-by-side tables and as the editor's start)."""
    blocks = street_blocks(area) if blocks is None else blocks
    grid = area.buildings["grid"]
    if grid.isna().any():
        raise PlanError(
            f"unit {area.unit['code']}: {int(grid.isna().sum())} buildings have no grid yet; "
            "propose a plan instead"
        )
    return assemble(area, blocks, grid, blocks["current"], band=band, micro_band=micro_band)


# --- hand edits ---------------------------------------------------------------------------------


def move(
    proposal: Proposal, area: Area, *, buildings: Collection[int] = (),
    blocks: Collection[str] = (), to: str, require_neighbour: bool = True,
) -> Proposal:  # fmt: skip
    """The proposal with ``buildings`` and every building of ``blocks`` moved to grid ``to``.

    With ``require_neighbour`` the moved blocks or buildings must touch grid ``to`` (share a
    boundary) and stay in the same community."""
    if to not in proposal.grids.index:
        raise PlanError(f"grid {to} is not in the plan")
    members = _members(proposal.blocks)
    ids = set(buildings) | set(members.loc[members["block"].isin(blocks), "building"])
    touched = {to} | set(proposal.assignment.loc[list(ids), "grid_code"])
    if touched & set(proposal.locked):
        raise PlanError(f"grid(s) {', '.join(sorted(touched & set(proposal.locked)))} are locked")
    if require_neighbour:
        _check_neighbour(proposal, area, ids, blocks, to)
    building_grid = proposal.assignment["grid_code"].copy()
    building_grid[list(ids)] = to
    block_grid = proposal.block_grid.copy()
    block_grid[list(blocks)] = to
    return assemble(
        area, proposal.blocks, building_grid, block_grid, band=proposal.band,
        micro_band=proposal.micro_band, full=proposal.full, seed=proposal.seed,
        locked=proposal.locked,
    )  # fmt: skip


def _check_neighbour(
    proposal: Proposal, area: Area, ids: set[int], blocks: Collection[str], to: str
) -> None:
    parent = proposal.grids.at[to, "parent_code"]
    wrong = [b for b in ids if area.buildings.at[b, "community"] != parent]
    if wrong:
        raise PlanError(
            f"building {area.buildings.at[wrong[0], 'code']} is in community "
            f"{area.buildings.at[wrong[0], 'community']}, grid {to} in {parent}: grids never "
            "cross their community"
        )
    target = proposal.grids.at[to, "geometry"]
    shapes = list(proposal.blocks.loc[list(blocks)].geometry) + list(
        area.buildings.loc[list(ids - _block_buildings(proposal, blocks))].geometry
    )
    far = [s for s in shapes if shapely.distance(s, target) > 1e-6]
    if far and not _touches_via_tiles(proposal, area, ids, to):
        raise PlanError(f"the selection does not border grid {to}: move to a neighbouring grid")


def _block_buildings(proposal: Proposal, blocks: Collection[str]) -> set[int]:
    members = _members(proposal.blocks)
    return set(members.loc[members["block"].isin(blocks), "building"])


def _touches_via_tiles(proposal: Proposal, area: Area, ids: set[int], to: str) -> bool:
    """A building deep inside a block borders ``to`` when its tile (its block, or its Voronoi
    piece) shares a boundary with the grid."""
    tiles = grid_tiles(
        proposal.blocks, area.buildings, proposal.assignment["grid_code"], proposal.block_grid
    )
    homes = set(proposal.assignment.loc[list(ids), "grid_code"])
    mine = tiles[tiles["grid"].isin(homes)]
    target = proposal.grids.at[to, "geometry"]
    return bool(
        (shapely.length(shapely.intersection(mine.geometry.values, target.boundary)) > 0).any()
    )


# --- analysis -----------------------------------------------------------------------------------


def analyse_unit(
    conn: Connection, scope: Scope, code: str, *, bands: Mapping[str, tuple[int, int]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Children of unit ``code``: name, households, residents, buildings (from the buildings
    inside each), band status, deviation, parts, problems; and the problem list (over, under,
    not contiguous, crossing the parent, gap, overlap, building without a child)."""
    unit = q.unit_info(conn, scope, code)
    if unit is None:
        raise PlanError(f"unit {code}: no current unit with this code in your jurisdiction")
    sql = "SELECT level FROM units WHERE parent_code = :c AND valid_to IS NULL LIMIT 1"
    level = conn.execute(text(sql), {"c": code}).scalar()
    if level is None:
        raise PlanError(f"unit {code} ({unit['name']}) has no children to analyse")
    children = q.area_units(conn, scope, code, level)
    children = children[children["parent_code"] == code]
    houses = q.area_buildings(conn, scope, code)
    band = bands.get(level) or NO_BAND
    result = analyse(
        children[["geometry"]], band=band, parent=unit["geometry"],
        buildings=gpd.GeoDataFrame(houses[["households", "geometry"]], crs=SRID),
    )  # fmt: skip
    owner = buildings_to_blocks(houses, children[["geometry"]])
    table = result.children.join(children[["name"]])
    table["residents"] = houses["residents"].groupby(owner).sum().reindex(table.index, fill_value=0)
    table["buildings"] = owner.value_counts().reindex(table.index, fill_value=0)
    table["level"] = level
    return table, result.problems


# --- persistence --------------------------------------------------------------------------------


def save_plan(
    bind: Engine | Connection,
    scope: Scope,
    proposal: Proposal,
    *,
    name: str,
    created_by: str,
    note: str | None = None,
) -> int:
    """Store ``proposal`` as a named draft of its unit; returns the plan id."""
    with transaction(bind) as conn:
        unit = q.unit_info(conn, scope, proposal.unit_code)
        if unit is None:
            raise PlanError(f"unit {proposal.unit_code} is not current or not in your jurisdiction")
        taken = "SELECT 1 FROM plans WHERE unit_code = :u AND name = :n"
        if conn.execute(text(taken), {"u": proposal.unit_code, "n": name}).first():
            raise PlanError(f"unit {proposal.unit_code} already has a plan named {name!r}")
        plan_id = _insert_plan(conn, proposal, unit, name, created_by, note)
        _insert_grids(conn, plan_id, proposal.grids, "grid")
        _insert_grids(conn, plan_id, proposal.microgrids, "microgrid")
        _insert_assignments(conn, plan_id, proposal.assignment)
    return plan_id


def _insert_plan(
    conn: Connection, p: Proposal, unit: dict[str, Any], name: str, by: str, note: str | None
) -> int:
    import json

    sql = """INSERT INTO plans (name, unit_code, unit_path, band_low, band_high, micro_low,
                                micro_high, full_redraw, seed, locked, metrics, note, created_by)
             VALUES (:name, :unit, :path, :lo, :hi, :mlo, :mhi, :full, :seed, :locked,
                     CAST(:metrics AS jsonb), :note, :by) RETURNING id"""
    micro = p.micro_band or (None, None)
    metrics = json.dumps({**p.metrics, "violations": p.violations}, default=_json_default)
    params = {
        "name": name, "unit": p.unit_code, "path": unit["unit_path"], "lo": p.band[0],
        "hi": p.band[1], "mlo": micro[0], "mhi": micro[1], "full": p.full, "seed": p.seed,
        "locked": list(p.locked), "metrics": metrics, "note": note, "by": by,
    }  # fmt: skip
    return int(conn.execute(text(sql), params).scalar_one())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _insert_grids(conn: Connection, plan_id: int, frame: gpd.GeoDataFrame, level: str) -> None:
    if frame.empty:
        return
    stage = pd.DataFrame(
        {
            "code": frame.index,
            "parent_code": frame["parent_code"].to_numpy(),
            "name": frame["name"].to_numpy(),
            "label": frame.index,
            "households": frame["households"].to_numpy(),
            "residents": frame.get("residents", pd.Series(0, frame.index)).to_numpy(),
            "buildings": frame.get("buildings", pd.Series(0, frame.index)).to_numpy(),
            "status": frame["status"].to_numpy(),
            "polsby_popper": frame.get("polsby_popper", pd.Series(None, frame.index)).to_numpy(),
            "kept": frame.get("kept", pd.Series(False, frame.index)).to_numpy(),
            "locked": frame.get("locked", pd.Series(False, frame.index)).to_numpy(),
            "wkb": shapely.to_wkb(np.asarray(frame.geometry.values), hex=True),
        }
    )
    copy_frame(conn, "stg_plan_grids", stage)
    conn.execute(
        text("""
        INSERT INTO plan_grids (plan_id, level, code, parent_code, name, label, households,
                                residents, buildings, status, polsby_popper, kept, locked, geom)
        SELECT :p, :level, code, parent_code, name, label, households::int, residents::int,
               buildings::int, status, polsby_popper::float8, kept::boolean, locked::boolean,
               ST_Multi(ST_CollectionExtract(ST_SetSRID(ST_GeomFromWKB(decode(wkb, 'hex')),
                                                        4490), 3))
        FROM stg_plan_grids"""),
        {"p": plan_id, "level": level},
    )


def _insert_assignments(conn: Connection, plan_id: int, assignment: pd.DataFrame) -> None:
    stage = pd.DataFrame(
        {
            "building_id": assignment.index,
            "grid_code": assignment["grid_code"].to_numpy(),
            "microgrid_code": assignment["microgrid_code"].to_numpy(),
            "previous_code": assignment["previous_code"].to_numpy(),
        }
    )
    copy_frame(conn, "stg_plan_assign", stage)
    conn.execute(
        text("""
        INSERT INTO plan_assignments (plan_id, building_id, grid_code, microgrid_code,
                                      previous_code)
        SELECT :p, building_id::int, grid_code, microgrid_code, previous_code
        FROM stg_plan_assign"""),
        {"p": plan_id},
    )


# --- approval -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    plan_id: int
    effective: date
    closed: list[str]
    created: list[str]
    untouched: list[str]
    staff_moved: int


def approve_plan(
    bind: Engine | Connection, scope: Scope, plan_id: int, *, effective: date, actor: str
) -> Approval:
    """Make plan ``plan_id`` current from ``effective``, in one transaction (see module doc)."""
    with transaction(bind) as conn:
        meta = q.plan_meta(conn, scope, plan_id)
        if meta is None:
            raise PlanError(f"plan {plan_id}: no such plan in your jurisdiction")
        if meta["status"] != "draft":
            raise PlanError(f"plan {plan_id} ({meta['name']}) is {meta['status']}, not a draft")
        old = _old_units(conn, plan_id)
        _check_dates(old, effective, plan_id)
        untouched = _untouched(conn, plan_id)
        successors = _successors(conn, plan_id)
        closing = old[~old["code"].isin(untouched)]
        conn.execute(
            text("UPDATE units SET valid_to = :d WHERE id = ANY(:ids)"),
            {"d": effective, "ids": closing["id"].tolist()},
        )
        created = _insert_units(conn, plan_id, effective, untouched)
        staff = _move_staff(conn, successors, effective)
        reassign_all(conn)
        _assign_planned_buildings(conn, plan_id)
        refresh_totals(conn)
        _mark_approved(conn, meta, actor, effective)
    return Approval(plan_id, effective, sorted(closing["code"]), created, sorted(untouched), staff)


def _old_units(conn: Connection, plan_id: int) -> pd.DataFrame:
    """Current grids and micro-grids under the plan's communities."""
    sql = """SELECT u.id, u.code, u.level, u.valid_from FROM units u
             WHERE u.valid_to IS NULL AND u.level IN ('grid', 'microgrid')
               AND u.unit_path && (SELECT array_agg(DISTINCT parent_code)::varchar[]
                                   FROM plan_grids WHERE plan_id = :p AND level = 'grid')"""
    rows = conn.execute(text(sql), {"p": plan_id}).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["id", "code", "level", "valid_from"])


def _check_dates(old: pd.DataFrame, effective: date, plan_id: int) -> None:
    if old.empty:
        return
    latest = max(old["valid_from"])
    if effective < latest:
        raise PlanError(
            f"plan {plan_id}: effective date {effective} is before {latest}, when a grid it "
            "replaces came into force"
        )


def _untouched(conn: Connection, plan_id: int) -> set[str]:
    """Codes whose current row can stay: same code, level, parent and shape (within ~1 m²);
    for a micro-grid, its grid must stay too."""
    sql = """SELECT g.code, g.level FROM plan_grids g
             JOIN units u ON u.code = g.code AND u.valid_to IS NULL AND u.level = g.level
                          AND u.parent_code = g.parent_code
             WHERE g.plan_id = :p AND ST_Area(ST_SymDifference(u.geom, g.geom)) < 1e-10"""
    rows = conn.execute(text(sql), {"p": plan_id}).all()
    grids = {c for c, level in rows if level == "grid"}
    micro = {c for c, level in rows if level == "microgrid" and c[:-3] in grids}
    counts = "SELECT count(*) FROM units WHERE parent_code = :g AND valid_to IS NULL"
    planned = "SELECT count(*) FROM plan_grids WHERE plan_id = :p AND parent_code = :g"
    # a grid stays only when every micro-grid under it stays as well
    for g in sorted(grids):
        now = conn.execute(text(counts), {"g": g}).scalar_one()
        mine = {m for m in micro if m[:-3] == g}
        plan_n = conn.execute(text(planned), {"p": plan_id, "g": g}).scalar_one()
        if not (now == plan_n == len(mine)):
            grids.discard(g)
            micro -= mine
    return grids | micro


def _successors(conn: Connection, plan_id: int) -> dict[str, str]:
    """Old grid / micro-grid code → the plan's unit of the same level holding most of its
    households (computed before anything changes)."""
    sql = """
        WITH pairs AS (
            SELECT o.code AS old_code,
                   CASE WHEN o.level = 'grid' THEN a.grid_code
                        ELSE COALESCE(a.microgrid_code, a.grid_code) END AS new_code,
                   sum(b.households + 0.001) AS w
            FROM plan_assignments a JOIN buildings b ON b.id = a.building_id
            JOIN units o ON o.code = ANY(b.unit_path) AND o.valid_to IS NULL
                        AND o.level IN ('grid', 'microgrid')
            WHERE a.plan_id = :p GROUP BY 1, 2)
        SELECT DISTINCT ON (old_code) old_code, new_code FROM pairs
        ORDER BY old_code, w DESC, new_code"""
    return dict(conn.execute(text(sql), {"p": plan_id}).all())  # type: ignore[arg-type]


def _insert_units(conn: Connection, plan_id: int, effective: date, keep: set[str]) -> list[str]:
    created: list[str] = []
    for level, parent_level in (("grid", "community"), ("microgrid", "grid")):
        sql = """
            INSERT INTO units (code, name, level, kind, parent_id, parent_code, depth, unit_path,
                               geom, valid_from)
            SELECT g.code, g.name, g.level,
                   COALESCE((SELECT o.kind FROM units o WHERE o.code = g.code
                             ORDER BY o.id DESC LIMIT 1), p.kind),
                   p.id, p.code, p.depth + 1, p.unit_path || g.code::varchar, g.geom, :d
            FROM plan_grids g JOIN units p ON p.code = g.parent_code AND p.valid_to IS NULL
                                          AND p.level = :parent_level
            WHERE g.plan_id = :p AND g.level = :level AND NOT (g.code = ANY(:keep))
            RETURNING code"""
        params = {"p": plan_id, "d": effective, "level": level, "parent_level": parent_level,
                  "keep": sorted(keep)}  # fmt: skip
        created += conn.execute(text(sql), params).scalars().all()
    return sorted(created)


def _move_staff(conn: Connection, successors: dict[str, str], effective: date) -> int:
    """Staff posted to a retired grid or micro-grid follow its successor."""
    sql = """UPDATE staff s SET unit_code = :new WHERE s.unit_code = :old
             AND NOT EXISTS (SELECT 1 FROM units u WHERE u.code = :old AND u.valid_to IS NULL)"""
    moved = 0
    for old, new in successors.items():
        moved += conn.execute(text(sql), {"old": old, "new": new}).rowcount or 0
    return moved


def _assign_planned_buildings(conn: Connection, plan_id: int) -> None:
    """The plan's building assignment is authoritative (location decided only the others)."""
    conn.execute(
        text("""
        UPDATE buildings b SET unit_id = u.id, unit_path = u.unit_path
        FROM plan_assignments a JOIN units u
             ON u.code = COALESCE(a.microgrid_code, a.grid_code) AND u.valid_to IS NULL
        WHERE a.plan_id = :p AND b.id = a.building_id
          AND (b.unit_id, b.unit_path) IS DISTINCT FROM (u.id, u.unit_path)"""),
        {"p": plan_id},
    )


def _mark_approved(conn: Connection, meta: dict[str, Any], actor: str, effective: date) -> None:
    conn.execute(
        text("UPDATE plans SET status = 'superseded' WHERE unit_code = :u AND status = 'approved'"),
        {"u": meta["unit_code"]},
    )
    conn.execute(
        text("""UPDATE plans SET status = 'approved', approved_by = :a, approved_at = now(),
                effective_date = :d WHERE id = :p"""),
        {"a": actor, "d": effective, "p": meta["id"]},
    )


# --- export -------------------------------------------------------------------------------------

EXPORT_FORMATS = ("gpkg", "shp", "csv")
SHP_FIELDS = {
    "code": "code", "parent_code": "parent", "name": "name", "households": "households",
    "residents": "residents", "buildings": "buildings", "status": "status",
    "polsby_popper": "pp",
}  # fmt: skip


def export_plan(conn: Connection, scope: Scope, plan_id: int, fmt: str) -> tuple[str, bytes]:
    """``(filename, bytes)`` of a plan as a GeoPackage (grids, micro-grids, buildings), a zipped
    Shapefile set (UTF-8 with .cpg, so Chinese names survive) or a CSV building → grid
    equivalency in UTF-8 with BOM (Excel opens it as UTF-8)."""
    if fmt not in EXPORT_FORMATS:
        raise PlanError(f"export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    meta = q.plan_meta(conn, scope, plan_id)
    if meta is None:
        raise PlanError(f"plan {plan_id}: no such plan in your jurisdiction")
    stem = f"plan-{plan_id}-{meta['unit_code']}"
    if fmt == "csv":
        return f"{stem}.csv", _equivalency(conn, scope, plan_id).encode("utf-8-sig")
    layers = {
        "grids": _export_frame(q.plan_grids(conn, scope, plan_id)),
        "microgrids": _export_frame(q.plan_grids(conn, scope, plan_id, level="microgrid")),
    }
    if fmt == "gpkg":
        return f"{stem}.gpkg", _gpkg(layers | {"buildings": _building_layer(conn, scope, plan_id)})
    return f"{stem}-shp.zip", _shapefiles(layers, stem)


def _equivalency(conn: Connection, scope: Scope, plan_id: int) -> str:
    table = q.plan_assignments(conn, scope, plan_id).drop(columns="building_id")
    return neutralise_frame(table).to_csv(index=False, lineterminator="\r\n")


def _export_frame(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = frame.reset_index()[[*SHP_FIELDS, "geometry"]]
    return gpd.GeoDataFrame(out, geometry="geometry", crs=SRID)


def _building_layer(conn: Connection, scope: Scope, plan_id: int) -> gpd.GeoDataFrame:
    table = q.plan_assignments(conn, scope, plan_id)
    sql = "SELECT id, ST_AsBinary(geom) FROM buildings WHERE id = ANY(:ids)"
    rows = conn.execute(text(sql), {"ids": table["building_id"].tolist()}).all()
    geoms: dict[int, bytes] = {r[0]: r[1] for r in rows}
    shapes = [shapely.from_wkb(bytes(geoms[i])) for i in table["building_id"]]
    return gpd.GeoDataFrame(table, geometry=shapes, crs=SRID)


def _gpkg(layers: Mapping[str, gpd.GeoDataFrame]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="gridgov-plan-") as tmp:
        path = Path(tmp) / "plan.gpkg"
        for layer, frame in layers.items():
            if not frame.empty:
                pyogrio.write_dataframe(
                    frame, path, layer=layer, driver="GPKG", append=path.exists()
                )
        return path.read_bytes()


def _shapefiles(layers: Mapping[str, gpd.GeoDataFrame], stem: str) -> bytes:
    buffer = io.BytesIO()
    with (
        tempfile.TemporaryDirectory(prefix="gridgov-plan-") as tmp,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for layer, frame in layers.items():
            if frame.empty:
                continue
            path = Path(tmp) / f"{stem}-{layer}.shp"
            renamed = frame.rename(columns=SHP_FIELDS)
            pyogrio.write_dataframe(renamed, path, driver="ESRI Shapefile", encoding="UTF-8")
            for part in sorted(Path(tmp).glob(f"{stem}-{layer}.*")):
                archive.write(part, part.name)
    return buffer.getvalue()
