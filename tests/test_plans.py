"""Plans on the real PostGIS: propose, save, load, compare, approve with history, export."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
from sqlalchemy import Connection, text

from etl import plans
from etl.queries import Scope
from etl.queries import planner as q
from tests.test_plans_data import COMMUNITY, block_households, build_community

ALL = Scope()
BAND = (300, 500)
MICRO = (30, 100)
EFFECTIVE = date(2026, 12, 1)


@pytest.fixture
def area(conn: Connection) -> plans.Area:
    build_community(conn)
    return plans.read_area(conn, ALL, COMMUNITY)


def test_area_and_blocks_match_the_fixture(area: plans.Area) -> None:
    assert len(area.grids) == 5 and len(area.microgrids) == 20 and len(area.buildings) == 80
    blocks = plans.street_blocks(area)
    assert len(blocks) == 40
    # every block's current grid is the grid of both its buildings
    for ids, current in zip(blocks["building_ids"], blocks["current"], strict=True):
        assert set(area.buildings.loc[list(ids), "grid"]) == {current}
    assert blocks["households"].sum() == area.buildings["households"].sum()


def test_analysis_finds_the_over_full_grid(conn: Connection, area: plans.Area) -> None:
    table, problems = plans.analyse_unit(conn, ALL, COMMUNITY, bands={"grid": BAND})
    over = table.index[table["status"] == "over"].tolist()
    assert over == [f"{COMMUNITY}005"]
    # households and residents recounted from the buildings, independently of units.households
    want = area.buildings.groupby("grid")[["households", "residents"]].sum()
    assert table["households"].to_dict() == want["households"].astype(float).to_dict()
    assert table["residents"].to_dict() == want["residents"].to_dict()
    assert set(problems["kind"]) == {"over"}


def test_minimal_change_keeps_far_grids_and_fixes_the_band(area: plans.Area) -> None:
    proposal = plans.propose(area, band=BAND, micro_band=MICRO, seed=3)
    assert (proposal.grids["status"] == "in").all(), proposal.violations
    # grid 001 lies four rings of grids from the over-full 005: beyond the solver's reach (3)
    for code in (f"{COMMUNITY}001",):
        assert code in proposal.grids.index
        before = set(area.buildings.index[area.buildings["grid"] == code])
        after = set(proposal.assignment.index[proposal.assignment["grid_code"] == code])
        assert before == after
    # totals are the buildings' own households; codes are unique 15-digit children
    assert proposal.grids["households"].sum() == area.buildings["households"].sum()
    assert all(c.startswith(COMMUNITY) and len(c) == 15 for c in proposal.grids.index)
    assert proposal.assignment["grid_code"].notna().all()
    assert proposal.assignment["microgrid_code"].notna().all()
    micro_parent = proposal.microgrids["parent_code"]
    for b, row in proposal.assignment.iterrows():
        assert micro_parent[row["microgrid_code"]] == row["grid_code"], b


def test_untouched_grids_keep_their_micro_grids(area: plans.Area) -> None:
    proposal = plans.propose(area, band=BAND, micro_band=MICRO, seed=3)
    first = f"{COMMUNITY}001"
    kept = proposal.microgrids[proposal.microgrids["parent_code"] == first]
    assert sorted(kept.index) == sorted(
        area.microgrids.index[area.microgrids["parent_code"] == first]
    )


def test_new_codes_skip_numbers_used_before(area: plans.Area) -> None:
    retired = f"{COMMUNITY}006"
    area = plans.Area(**{**area.__dict__, "used_codes": area.used_codes | {retired}})
    proposal = plans.propose(area, band=BAND, seed=3, full=True)
    assert retired not in proposal.grids.index


def test_save_load_compare_round_trip(conn: Connection, area: plans.Area) -> None:
    minimal = plans.propose(area, band=BAND, micro_band=MICRO, seed=3)
    full = plans.propose(area, band=BAND, micro_band=MICRO, seed=5, full=True)
    a = plans.save_plan(conn, ALL, minimal, name="最小调整", created_by="tester")
    b = plans.save_plan(conn, ALL, full, name="全面重划", created_by="tester")
    listed = q.list_plans(conn, ALL, COMMUNITY)
    assert {p["name"] for p in listed} == {"最小调整", "全面重划"}
    grids = q.plan_grids(conn, ALL, a)
    assert sorted(grids.index) == sorted(minimal.grids.index)
    assert grids["households"].to_dict() == minimal.grids["households"].to_dict()
    stored = q.plan_assignments(conn, ALL, a).set_index("building_id")
    assert stored["grid_code"].to_dict() == minimal.assignment["grid_code"].to_dict()
    assert stored["microgrid_code"].to_dict() == minimal.assignment["microgrid_code"].to_dict()
    # comparison against a plain recount of the two assignments
    cmp = q.compare_plans(conn, ALL, a, b)
    left, right = minimal.assignment["grid_code"], full.assignment["grid_code"]
    moved = left.index[left.ne(right.reindex(left.index))]
    assert cmp.summary["buildings_moved"] == len(moved)
    assert cmp.summary["households_moved"] == int(area.buildings.loc[moved, "households"].sum())
    assert cmp.grids["households_b"].sum() == area.buildings["households"].sum()
    with pytest.raises(plans.PlanError, match="already has a plan named"):
        plans.save_plan(conn, ALL, minimal, name="最小调整", created_by="tester")


def test_scope_hides_other_jurisdictions(conn: Connection, area: plans.Area) -> None:
    plan_id = plans.save_plan(conn, ALL, plans.propose(area, band=BAND, seed=1), name="p",
                              created_by="t")  # fmt: skip
    elsewhere = Scope(user="other", unit_codes=("999999",))
    assert q.list_plans(conn, elsewhere) == []
    assert q.plan_meta(conn, elsewhere, plan_id) is None
    with pytest.raises(plans.PlanError):
        plans.read_area(conn, elsewhere, COMMUNITY)


def _current(conn: Connection, level: str) -> pd.DataFrame:
    rows = conn.execute(
        text(
            "SELECT code, households, valid_from FROM units WHERE level = :l AND valid_to IS NULL"
        ),
        {"l": level},
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["code", "households", "valid_from"])


def test_approve_keeps_history_and_reassigns_everything(conn: Connection, area: plans.Area) -> None:
    proposal = plans.propose(area, band=BAND, micro_band=MICRO, seed=3)
    plan_id = plans.save_plan(conn, ALL, proposal, name="v1", created_by="tester")
    before = set(area.grids.index) | set(area.microgrids.index)
    result = plans.approve_plan(conn, ALL, plan_id, effective=EFFECTIVE, actor="县网格办")

    # the old rows that changed are closed on the effective date, not deleted
    closed = (
        conn.execute(text("SELECT code FROM units WHERE valid_to = :d"), {"d": EFFECTIVE})
        .scalars()
        .all()
    )
    assert set(closed) == set(result.closed) and set(closed) <= before
    assert f"{COMMUNITY}005" in closed
    # untouched grids keep their row and valid_from; new rows start on the effective date
    grids = _current(conn, "grid").set_index("code")
    assert sorted(grids.index) == sorted(proposal.grids.index)
    assert grids.index.is_unique
    for code in result.created:
        assert (
            conn.execute(
                text("SELECT valid_from FROM units WHERE code = :c AND valid_to IS NULL"),
                {"c": code},
            ).scalar()
            == EFFECTIVE
        )
    assert f"{COMMUNITY}001" in result.untouched
    # every building is in exactly one current grid, the one the plan says
    rows = conn.execute(
        text("""SELECT b.id, array_agg(g.code) FROM buildings b
                JOIN units g ON g.code = ANY(b.unit_path) AND g.level = 'grid'
                             AND g.valid_to IS NULL GROUP BY b.id""")
    ).all()
    assert len(rows) == len(area.buildings)
    assert {i: codes[0] for i, codes in rows} == proposal.assignment["grid_code"].to_dict()
    assert all(len(codes) == 1 for _, codes in rows)
    # totals equal a direct SQL recount
    recount = dict(conn.execute(
        text("""SELECT g.code, sum(b.households) FROM units g JOIN buildings b
                ON b.unit_path @> ARRAY[g.code] WHERE g.level IN ('grid', 'microgrid')
                AND g.valid_to IS NULL GROUP BY g.code""")
    ).all())  # fmt: skip
    for level in ("grid", "microgrid"):
        for code, hh in _current(conn, level)[["code", "households"]].itertuples(index=False):
            assert hh == recount.get(code, 0), code
    # events, patrols and staff point at current units
    stale = conn.execute(
        text("""SELECT count(*) FROM (SELECT unit_id FROM events UNION ALL
                SELECT unit_id FROM patrols UNION ALL SELECT unit_id FROM staff) t
                JOIN units u ON u.id = t.unit_id WHERE u.valid_to IS NOT NULL""")
    ).scalar()
    assert stale == 0
    assert plans.q.plan_meta(conn, ALL, plan_id)["status"] == "approved"
    with pytest.raises(plans.PlanError, match="not a draft"):
        plans.approve_plan(conn, ALL, plan_id, effective=EFFECTIVE, actor="x")


def test_a_second_approval_supersedes_the_first(conn: Connection, area: plans.Area) -> None:
    one = plans.save_plan(conn, ALL, plans.propose(area, band=BAND, seed=3), name="a",
                          created_by="t")  # fmt: skip
    plans.approve_plan(conn, ALL, one, effective=EFFECTIVE, actor="t")
    fresh = plans.read_area(conn, ALL, COMMUNITY)
    two = plans.save_plan(conn, ALL, plans.propose(fresh, band=(200, 300), seed=3, full=True),
                          name="b", created_by="t")  # fmt: skip
    with pytest.raises(plans.PlanError, match="before"):
        plans.approve_plan(conn, ALL, two, effective=date(2025, 1, 1), actor="t")
    plans.approve_plan(conn, ALL, two, effective=date(2027, 1, 1), actor="t")
    assert q.plan_meta(conn, ALL, one)["status"] == "superseded"
    history = conn.execute(
        text(
            "SELECT count(DISTINCT valid_to) FROM units WHERE level = 'grid' AND valid_to IS NOT NULL"
        )
    ).scalar()
    assert history == 2


def test_hand_moves_update_totals_and_check_neighbours(area: plans.Area) -> None:
    proposal = plans.current_proposal(area, band=BAND)
    block = f"{COMMUNITY}:B1"  # north-west corner block, in grid 001
    ids = list(proposal.blocks.at[block, "building_ids"])
    assert set(proposal.assignment.loc[ids, "grid_code"]) == {f"{COMMUNITY}001"}
    with pytest.raises(plans.PlanError, match="neighbouring"):
        plans.move(proposal, area, blocks=[block], to=f"{COMMUNITY}003")
    moved = plans.move(proposal, area, blocks=[f"{COMMUNITY}:B2"], to=f"{COMMUNITY}002")
    hh = moved.grids["households"]
    assert hh[f"{COMMUNITY}001"] == 400 - block_households(1)
    assert hh[f"{COMMUNITY}002"] == 400 + block_households(1)
    # forced across the map, B11 makes grid 003 two parts and cuts B1 (whose other neighbour
    # B2 left already) off grid 001: the check names both
    split = plans.move(moved, area, blocks=[f"{COMMUNITY}:B11"], to=f"{COMMUNITY}003",
                       require_neighbour=False)  # fmt: skip
    broken = {v["code"] for v in split.violations if v["kind"] == "not_contiguous"}
    assert broken == {f"{COMMUNITY}001", f"{COMMUNITY}003"}
    assert split.grids.at[f"{COMMUNITY}003", "parts"] == 2


def test_exports(conn: Connection, area: plans.Area, tmp_path: Path) -> None:
    plan_id = plans.save_plan(conn, ALL, plans.propose(area, band=BAND, micro_band=MICRO, seed=3),
                              name="导出", created_by="t")  # fmt: skip
    name, data = plans.export_plan(conn, ALL, plan_id, "gpkg")
    path = tmp_path / name
    path.write_bytes(data)
    layers = {row[0] for row in pyogrio.list_layers(path)}
    assert layers == {"grids", "microgrids", "buildings"}
    grids = pyogrio.read_dataframe(path, layer="grids")
    assert grids["name"].str.contains("网格").all()
    name, data = plans.export_plan(conn, ALL, plan_id, "shp")
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert any(n.endswith("-grids.cpg") for n in names)
    archive.extractall(tmp_path / "shp")
    shp = next((tmp_path / "shp").glob("*-grids.shp"))
    back = pyogrio.read_dataframe(shp)
    assert sorted(back["name"]) == sorted(q.plan_grids(conn, ALL, plan_id)["name"])
    name, data = plans.export_plan(conn, ALL, plan_id, "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    table = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str)
    assert len(table) == len(area.buildings)
    assert table["address"].str.startswith("红旗路").all()


def test_a_planner_approves_only_inside_their_own_township(
    conn: Connection, area: plans.Area
) -> None:
    """Through the app's role, with row-level security: a planner of another township cannot
    see the plan (so cannot approve it, whatever the page does); the plan's own township can."""
    from etl.db import DbScope, set_scope
    from etl.settings import APP_ROLE
    from tests.test_plans_data import TOWN

    # the fixture's load left its staging table (the owner's) in this transaction
    conn.execute(text("DROP TABLE IF EXISTS stg_assign"))
    conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    set_scope(conn, DbScope((TOWN,), "planner"))
    plan_id = plans.save_plan(conn, Scope("own", (TOWN,)), plans.propose(area, band=BAND, seed=5),
                              name="rls", created_by="own")  # fmt: skip
    other = "511781999"
    set_scope(conn, DbScope((other,), "planner"))
    with pytest.raises(plans.PlanError):
        plans.approve_plan(conn, Scope("other", (other,)), plan_id, effective=EFFECTIVE, actor="x")
    with pytest.raises(plans.PlanError):  # even with the page's filter "forgotten"
        plans.approve_plan(conn, ALL, plan_id, effective=EFFECTIVE, actor="x")
    set_scope(conn, DbScope((TOWN,), "planner"))
    result = plans.approve_plan(conn, Scope("own", (TOWN,)), plan_id, effective=EFFECTIVE,
                                actor="own")  # fmt: skip
    assert result.created or result.closed or result.untouched
