"""The planner page: pure parts, layout, and the callbacks called directly on a committed DB."""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dash
import pandas as pd
import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict
from sqlalchemy import Engine, create_engine, text

from etl import migrate, plans
from etl.access import Role
from etl.queries import Scope
from etl.settings import get_settings
from tests.accounts import acting
from tests.conftest import database_url, ensure_database
from tests.test_plans_data import COMMUNITY, COUNTY, build_community

BAND = (300, 500)


@pytest.fixture(scope="module")
def planner_engine() -> Iterator[Engine]:
    """A database of its own with the lattice community committed (page callbacks commit)."""
    url = database_url("_test_planner")
    ensure_database(url, fresh=True)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        build_community(conn)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app(planner_engine: Engine) -> dash.Dash:
    from dashboard.app import create_app

    return create_app(get_settings(), engine=planner_engine)


@pytest.fixture(scope="module")
def page(app: dash.Dash) -> Any:
    # the module Dash Pages loaded (importing it again under another name would register
    # /planner twice)
    name = next(p["module"] for p in dash.page_registry.values() if p["path"] == "/planner")
    return sys.modules[name]


@contextmanager
def triggered(app: dash.Dash, prop: str | None = None) -> Iterator[None]:
    """Run a callback body as Dash would: inside the app, with ``prop`` as the trigger."""
    token = context_value.set(
        AttributeDict(triggered_inputs=[{"prop_id": prop, "value": 1}] if prop else [])
    )
    try:
        with app.server.app_context(), acting(Role.PLANNER, COUNTY):
            yield
    finally:
        context_value.reset(token)


def ids_of(component: Any) -> list[str]:
    found = []
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend(node)
            continue
        if getattr(node, "id", None) is not None:
            found.append(node.id)
        stack.extend(
            getattr(node, "children", None) or []
            if not isinstance(getattr(node, "children", None), str)
            else []
        )
    return found


# --- pure parts -----------------------------------------------------------------------------------


def test_history_push_undo_redo(page: Any) -> None:
    work = page.push(None, {"n": 0})
    for n in range(1, 4):
        work = page.push(work, {"n": n})
    assert page.current(work) == {"n": 3}
    work = page.undo(page.undo(work))
    assert page.current(work) == {"n": 1}
    assert page.current(page.redo(work)) == {"n": 2}
    # a new edit after undo drops the redo tail
    work = page.push(work, {"n": 9})
    assert [s["n"] for s in work["history"]] == [0, 1, 9]
    assert page.current(page.redo(work)) == {"n": 9}
    assert page.current(page.undo(page.push(None, {"n": 0}))) == {"n": 0}
    many = None
    for n in range(page.HISTORY + 10):
        many = page.push(many, {"n": n})
    assert len(many["history"]) == page.HISTORY and page.current(many)["n"] == page.HISTORY + 9


def test_moved_buildings_and_grid_table(page: Any, planner_engine: Engine) -> None:
    with planner_engine.connect() as conn:
        area = plans.read_area(conn, Scope(), COMMUNITY)
    base = plans.current_proposal(area, band=BAND)
    after = plans.propose(area, band=BAND, seed=3)
    before_snap, after_snap = page.snapshot(base), page.snapshot(after)
    moved = page.moved_buildings(before_snap, after_snap)
    recount = [b for b in area.buildings.index
               if base.assignment.at[b, "grid_code"] != after.assignment.at[b, "grid_code"]]  # fmt: skip
    assert moved == sorted(recount) and moved
    rows = page.grid_table(base, after)
    by_code = {r["code"]: r for r in rows}
    assert by_code[f"{COMMUNITY}005"]["status_before"] == "over"
    assert sum(r["hh_after"] or 0 for r in rows) == area.buildings["households"].sum()
    assert sum(r["hh_before"] or 0 for r in rows) == area.buildings["households"].sum()
    # neighbours of the north-west block: only grid 002 (east of it) borders, 001 is its own
    assert page.neighbours(base, [f"{COMMUNITY}:B2"]) == [f"{COMMUNITY}002"]


def test_layout_ids_are_prefixed(app: dash.Dash, page: Any) -> None:
    with triggered(app):
        root = page.layout(unit=COMMUNITY)
    ids = ids_of(root)
    assert ids and all(str(i).startswith("planner-") for i in ids)
    unit = next(c for c in _walk(root) if getattr(c, "id", None) == "planner-unit")
    assert COMMUNITY in {o["value"] for o in unit.options} and unit.value == COMMUNITY


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, list | tuple):
        for n in node:
            yield from _walk(n)
        return
    yield node
    children = getattr(node, "children", None)
    if children is not None and not isinstance(children, str):
        yield from _walk(children)


def test_callbacks_end_to_end(app: dash.Dash, page: Any, planner_engine: Engine) -> None:
    with triggered(app, "planner-unit.value"):
        out = page.load_unit(COMMUNITY, 300, 500)
    blocks_fc, work = out[0], out[9]
    assert len(blocks_fc["features"]) == 40 and out[14] == ""
    assert len(work["history"]) == 1
    args = dict(unit=COMMUNITY, selected=[], target=None, low=300, high=500, mlow=30, mhigh=100,
                opts=["micro"], seed=3, locked=[f"{COMMUNITY}001"])  # fmt: skip
    with triggered(app, "planner-propose.n_clicks"):
        work, message = page.edit(1, 0, 0, 0, work=work, **args)
    assert len(work["history"]) == 2 and "方案已生成" in message
    proposed = page.current(work)
    assert set(proposed["buildings"].values()) >= {f"{COMMUNITY}001"}
    base = out[8]
    with triggered(app, "planner-work.data"):
        hide, moved, grids_fc, totals, targets, label = page.render(
            work, [], COMMUNITY, base, 300, 500, 30, 100, ["micro"], [f"{COMMUNITY}001"]
        )
    assert set(hide["colours"].values()) == {"#22c55e"}  # every grid in band
    assert moved["moved"] == page.moved_buildings(base, proposed)
    # select a block of grid 002 on its border with 003 and move it east
    block = next(b for b, g in proposed["blocks"].items() if g == f"{COMMUNITY}002"
                 and f"{COMMUNITY}003" in page.neighbours(_proposal(planner_engine, proposed), [b]))  # fmt: skip
    with triggered(app, "planner-plan-blocks.clickData"):
        selected = page.toggle_block({"properties": {"id": block}}, [])
    assert selected == [block]
    with triggered(app, "planner-move.n_clicks"):
        moved_work, message = page.edit(0, 1, 0, 0, work=work, **{**args, "selected": selected,
                                                                 "target": f"{COMMUNITY}003"})  # fmt: skip
    assert page.current(moved_work)["blocks"][block] == f"{COMMUNITY}003", message
    # moving out of a locked grid is refused
    locked_block = next(b for b, g in proposed["blocks"].items() if g == f"{COMMUNITY}001")
    with triggered(app, "planner-move.n_clicks"):
        _, message = page.edit(0, 1, 0, 0, work=work, **{**args, "selected": [locked_block],
                                                         "target": f"{COMMUNITY}002"})  # fmt: skip
    assert "locked" in message
    with triggered(app, "planner-undo.n_clicks"):
        undone, _ = page.edit(0, 0, 1, 0, work=moved_work, **args)
    assert page.current(undone) == proposed
    # save two versions, compare them, export, approve one
    with triggered(app, "planner-save.n_clicks"):
        msg1, options, _ = page.save_or_approve(1, 0, COMMUNITY, work, "方案一", None, None,
                                                300, 500, 30, 100, ["micro"], [])  # fmt: skip
        msg2, options, _ = page.save_or_approve(2, 0, COMMUNITY, moved_work, "方案二", None, None,
                                                300, 500, 30, 100, ["micro"], [])  # fmt: skip
    assert "已保存" in msg1 and "已保存" in msg2 and len(options) == 2
    ids = {o["label"].split("（")[0]: o["value"] for o in options}
    with triggered(app, "planner-compare.n_clicks"):
        shown = page.compare(1, ids["方案一"], ids["方案二"])
    assert f"调整楼栋 {len(proposed_block_buildings(planner_engine, block))}" in str(shown)
    with triggered(app, "planner-export.n_clicks"):
        sent = page.export(1, ids["方案一"], "csv")
    table = pd.read_csv(io.BytesIO(base64.b64decode(sent["content"])), encoding="utf-8-sig")
    assert len(table) == 80 and sent["filename"].endswith(".csv")
    with triggered(app, "planner-approve.n_clicks"):
        message, options, _ = page.save_or_approve(0, 1, COMMUNITY, work, None, ids["方案一"],
                                                   "2026-12-01", 300, 500, 30, 100, [], [])  # fmt: skip
    assert "已批准" in message
    with planner_engine.connect() as conn:
        history = conn.execute(
            text("SELECT count(*) FROM units WHERE valid_to = '2026-12-01'")
        ).scalar()
    assert history and history > 0


def _proposal(engine: Engine, snap: dict[str, Any]) -> plans.Proposal:
    with engine.connect() as conn:
        area = plans.read_area(conn, Scope(), COMMUNITY)
    blocks = plans.street_blocks(area)
    buildings, block_grid = _series(snap)
    return plans.assemble(area, blocks, buildings, block_grid.reindex(blocks.index), band=BAND)


def _series(snap: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
    buildings = pd.Series({int(k): v for k, v in snap["buildings"].items()}, dtype=object)
    return buildings, pd.Series(snap["blocks"], dtype=object)


def proposed_block_buildings(engine: Engine, block: str) -> tuple:
    with engine.connect() as conn:
        area = plans.read_area(conn, Scope(), COMMUNITY)
    return plans.street_blocks(area).at[block, "building_ids"]
