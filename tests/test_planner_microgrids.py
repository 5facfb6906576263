"""nest_microgrids: buildings as atoms inside each grid."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo.planner import assign_codes, assign_nested_codes, nest_microgrids, redraw
from tests.test_planner_fixtures import CELL, lattice


def town(seed: int, rows: int = 6, cols: int = 6) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Lattice blocks with 2–6 buildings each (5–40 households a building)."""
    rng = np.random.default_rng(seed)
    blocks = lattice(rows, cols, np.zeros(rows * cols, int))
    rows_out = []
    for block, geom in blocks.geometry.items():
        x0, y0 = geom.bounds[:2]
        for k in range(int(rng.integers(2, 7))):
            x, y = x0 + rng.uniform(10, CELL - 10), y0 + rng.uniform(10, CELL - 10)
            rows_out.append(
                (f"{block}-{k}", int(rng.integers(5, 41)), shapely.box(x - 3, y - 3, x + 3, y + 3))
            )
    buildings = gpd.GeoDataFrame(
        {"bid": [r[0] for r in rows_out], "households": [r[1] for r in rows_out]},
        geometry=[r[2] for r in rows_out],
        crs=blocks.crs,
    )
    owner = buildings["bid"].str.split("-").str[0]
    blocks["households"] = (
        buildings.groupby(owner.to_numpy())["households"].sum().reindex(blocks.index)
    )
    blocks["building_ids"] = [tuple(buildings["bid"][owner == b]) for b in blocks.index]
    return blocks, buildings


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_microgrids_nest_inside_grids_and_tile_them(seed: int) -> None:
    blocks, buildings = town(seed)
    grids = redraw(blocks, band=(300, 500), seed=seed)
    micro = nest_microgrids(grids, buildings, band=(30, 100), id_col="bid", seed=seed)
    # every building exactly once, inside the grid its block belongs to
    assert sorted(micro.assignment.index) == sorted(buildings["bid"])
    parent = micro.districts["parent"]
    grid_of_building = grids.building_assignment
    for building, label in micro.assignment.items():
        assert parent[label] == grid_of_building[building]
    # households add up; band met or flagged with a reason
    recount = buildings.set_index("bid")["households"].groupby(micro.assignment).sum()
    np.testing.assert_allclose(micro.districts["households"].reindex(recount.index), recount)
    h = micro.districts["households"]
    flagged = {v.district for v in micro.violations}
    assert set(h.index[(h < 30) | (h > 100)]) == flagged
    # micro-grids tile their grid: inside it, and together they cover it
    for grid, group in micro.districts.groupby("parent"):
        outline = grids.districts.geometry[grid]
        union = shapely.union_all(group.geometry.values)
        assert union.symmetric_difference(outline).area < 1e-3 * outline.area
        assert group.geometry.area.sum() == pytest.approx(outline.area, rel=1e-6)
    # labels read "<grid>/<n>"
    assert all(str(label).startswith(f"{parent[label]}/") for label in micro.districts.index)


def test_building_over_ceiling_is_its_own_microgrid() -> None:
    blocks, buildings = town(5, rows=3, cols=3)
    buildings.loc[0, "households"] = 150
    owner = buildings["bid"].str.split("-").str[0].to_numpy()
    blocks["households"] = buildings.groupby(owner)["households"].sum().reindex(blocks.index)
    grids = redraw(blocks, band=(200, 400))
    micro = nest_microgrids(grids, buildings, band=(30, 100), id_col="bid")
    tower = micro.assignment[buildings.loc[0, "bid"]]
    assert (micro.assignment == tower).sum() == 1
    (v,) = [v for v in micro.violations if v.district == tower]
    assert v.reason == (
        f"building {buildings.loc[0, 'bid']} alone holds 150 households, above the 100 ceiling: "
        "made its own micro-grid and flagged"
    )


def test_codes_for_grids_then_microgrids() -> None:
    blocks, buildings = town(3)
    grids = redraw(blocks, band=(300, 500))
    grid_codes = assign_codes(grids.districts, parent_code="320281001001")
    micro = nest_microgrids(grids, buildings, band=(30, 100), id_col="bid")
    codes = assign_nested_codes(micro.districts, parent_col="parent", parent_codes=grid_codes)
    assert codes.is_unique and codes.str.len().eq(18).all()
    assert all(
        code.startswith(grid_codes[micro.districts.loc[m, "parent"]]) for m, code in codes.items()
    )


def test_microgrids_without_building_assignment_use_points() -> None:
    blocks, buildings = town(4, rows=4, cols=4)
    grids = redraw(blocks.drop(columns="building_ids"), band=(300, 500))
    assert grids.building_assignment is None
    micro = nest_microgrids(grids, buildings, band=(30, 100), id_col="bid")
    assert sorted(micro.assignment.index) == sorted(buildings["bid"])
    assert sorted(micro.districts.index) == sorted(set(micro.assignment))
