"""The demo county generator: tiling, codes, totals, deliberate problems, determinism."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import shapely

from etl.demo import read_inputs
from geo.synth import DemoCounty, build_demo_county
from geo.topology import resolve_sibling_overlaps

END = pd.Timestamp("2026-11-20 18:00", tz="Asia/Shanghai").to_pydatetime()


@cache
def demo(scale: float, seed: int = 5) -> DemoCounty:
    outline, divisions, categories = read_inputs()
    return build_demo_county(outline, divisions, categories, rng=seed, end=END, scale=scale)


def test_same_seed_same_county_other_seed_differs() -> None:
    outline, divisions, categories = read_inputs()
    again = build_demo_county(outline, divisions, categories, rng=5, end=END, scale=0.2)
    first = demo(0.2)
    for name in ("units", "buildings", "staff", "patrols", "events", "roads"):
        a, b = getattr(first, name), getattr(again, name)
        pd.testing.assert_frame_equal(
            pd.DataFrame(a).drop(columns="geometry", errors="ignore"),
            pd.DataFrame(b).drop(columns="geometry", errors="ignore"),
        )
        if "geometry" in a:
            assert all(shapely.equals_exact(a.geometry.values, b.geometry.values, 0))
    other = build_demo_county(outline, divisions, categories, rng=6, end=END, scale=0.2)
    assert not other.buildings["households"].equals(first.buildings["households"])


def test_real_codes_and_children_extend_their_parents() -> None:
    units = demo(0.2).units
    _, divisions, _ = read_inputs()
    assert set(divisions["code"]) <= set(units["code"])
    by_code = units.set_index("code")
    children = units[units["parent_code"].notna()]
    assert children.apply(lambda r: r["code"].startswith(r["parent_code"]), axis=1).all()
    assert (
        by_code.loc[children["parent_code"], "level"].to_numpy() != children["level"].to_numpy()
    ).all()
    assert units["code"].is_unique


def test_siblings_tile_their_parent() -> None:
    units = resolve_sibling_overlaps(demo(0.2).units, group_col="parent_code").to_crs(4545)
    geoms = units.set_index("code").geometry
    for parent, kids in units.groupby("parent_code"):
        union = shapely.union_all(kids.geometry.values)
        gap = geoms[parent].difference(union).area
        assert gap < 1e-6 * geoms[parent].area + 5.0, (parent, gap)
    tree = shapely.STRtree(units.geometry.values)
    left, right = tree.query(units.geometry.values, predicate="intersects")
    same = (left < right) & (
        units["parent_code"].to_numpy()[left] == units["parent_code"].to_numpy()[right]
    )
    overlap = shapely.area(
        shapely.intersection(units.geometry.values[left[same]], units.geometry.values[right[same]])
    )
    assert overlap.max(initial=0) < 0.01  # m², reprojection noise only


def test_full_scale_totals_and_deliberate_problems() -> None:
    county = demo(1.0)
    hh = county.buildings["households"].sum()
    assert 135_000 <= hh <= 165_000
    grids = county.units[county.units["level"] == "grid"]
    assert 330 <= len(grids) <= 400
    assert 20_000 <= len(county.events) <= 30_000
    # buildings just outside the county: nothing contains them
    outline = shapely.union_all(county.units[county.units["level"] == "county"].geometry.values)
    reps = shapely.point_on_surface(county.buildings.geometry.values)
    outside = ~shapely.contains(outline, reps)
    assert 5 <= outside.sum() <= 10
    # grid household totals: some communities far over 500 and some under 200
    inside = county.buildings[~outside]
    grid_of = _grid_of(grids, inside)
    per_grid = inside.groupby(grid_of)["households"].sum()
    assert (per_grid > 700).sum() >= 3 and (per_grid < 200).sum() >= 3


def _grid_of(grids, buildings) -> np.ndarray:  # noqa: ANN001
    reps = shapely.point_on_surface(buildings.geometry.values)
    left, right = shapely.STRtree(grids.geometry.values).query(reps, predicate="within")
    out = np.full(len(buildings), "", dtype=object)
    out[left] = grids["code"].to_numpy()[right]
    return out


def test_events_are_inside_the_county_in_order_and_in_the_year() -> None:
    county = demo(0.2)
    events = county.events
    outline = shapely.union_all(county.units[county.units["level"] == "county"].geometry.values)
    assert shapely.contains(outline, events.geometry.values).all()
    for a, b in (
        ("reported_at", "dispatched_at"),
        ("dispatched_at", "handled_at"),
        ("handled_at", "closed_at"),
    ):
        both = events[a].notna() & events[b].notna()
        assert (events.loc[both, a] <= events.loc[both, b]).all(), (a, b)
    assert events["reported_at"].max() <= pd.Timestamp(END)
    assert events["reported_at"].min() >= pd.Timestamp(END) - pd.Timedelta(days=366)
    closed = events["status"].isin(["closed", "evaluated"]).mean()
    assert 0.9 < closed < 1.0
    staffed = set(county.staff["unit_code"])
    grid_codes = set(county.units.loc[county.units["level"] == "grid", "code"])
    assert 0 < len(grid_codes - staffed) <= 5  # a few grids deliberately without staff


def test_demo_history_never_precedes_the_report(demo_engine) -> None:  # noqa: ANN001
    from sqlalchemy import text

    with demo_engine.connect() as conn:
        early = conn.execute(
            text(
                "SELECT count(*) FROM event_history h JOIN events e ON e.id = h.event_id WHERE h.at < e.reported_at"
            )
        ).scalar_one()
        rows = conn.execute(text("SELECT count(*) FROM event_history")).scalar_one()
    assert rows > 0 and early == 0
