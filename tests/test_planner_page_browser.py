"""The planner page in real headless Chromium: load a community, propose, select a block.

Screenshots go to artifacts/screens/planner-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from etl import migrate
from etl.settings import get_settings
from tests.browser import browser, new_page, serve, shot, wait_dash_idle
from tests.conftest import database_url, ensure_database
from tests.test_plans_data import COMMUNITY, build_community

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    from dashboard.app import create_app

    url = database_url("_test_planner_browser")
    ensure_database(url, fresh=True)
    migrate.upgrade(url)
    engine: Engine = create_engine(url)
    with engine.begin() as conn:
        build_community(conn)
    with serve(create_app(get_settings(), engine=engine)) as base:
        yield base
    engine.dispose()


def test_propose_and_select_in_chromium(site: str) -> None:
    errors: list[str] = []
    with browser() as b:
        page: Any = new_page(b, width=1600, height=1000, errors=errors)
        page.goto(f"{site}/planner?unit={COMMUNITY}")
        page.wait_for_function(
            "() => document.querySelectorAll('#planner-map-current path.leaflet-interactive')"
            ".length >= 40",
            timeout=30000,
        )
        wait_dash_idle(page)
        assert "over" in page.inner_text("#planner-analysis")
        shot(page, "planner-loaded")
        page.click("#planner-propose")
        page.wait_for_function(
            "() => (document.querySelector('#planner-message') || {}).innerText"
            "?.includes('方案已生成')",
            timeout=30000,
        )
        wait_dash_idle(page)
        page.wait_for_selector("#planner-grid-table", timeout=20000)
        table = page.inner_text("#planner-grid-table")
        assert f"{COMMUNITY}005" in table and "over" in table  # before: over; after: in
        page.locator("#planner-map-plan path.leaflet-interactive").nth(12).click()  # a block
        page.wait_for_function(
            "() => document.querySelector('#planner-selection').innerText.includes('已选 1')",
            timeout=20000,
        )
        shot(page, "planner-proposed")
    real = [e for e in errors if "favicon" not in e]
    assert not real, real
