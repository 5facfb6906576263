"""The event desk in real headless Chromium against a served app and a real PostGIS: the queue
shows the case, the card offers exactly the actions geo.workflow allows, a click acts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, text
from waitress.server import create_server

from dashboard.app import create_app
from etl import incidents as inc
from etl import migrate
from etl.settings import Settings
from geo import workflow as wf
from tests.accounts import login_cookie
from tests.browser import SESSION, new_page
from tests.conftest import database_url, ensure_database
from tests.test_incidents_net import build_net

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def desk_engine() -> Iterator[Engine]:
    url = database_url("_test_desk")
    ensure_database(url)
    migrate.upgrade(url)
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("TRUNCATE units, events, event_history, event_categories, responders "
                       "RESTART IDENTITY CASCADE"))  # fmt: skip
        build_net(c)
        cats = inc.load_categories(c)
        now = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(hours=1)
        rep = inc.Report("0201", 108.015, 32.005, now, description="垃圾堆放 desk test",
                         code="DESK-1")  # fmt: skip
        inc.report(c, rep, cats)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def served(desk_engine: Engine) -> Iterator[str]:
    """The desk served, and a dispatcher of the county logged in (its session in SESSION)."""
    app = create_app(Settings(), engine=desk_engine)
    SESSION["cookie"] = login_cookie(app, "dispatcher")
    server = create_server(app.server, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def test_desk_acts_on_a_case(served: str, desk_engine: Engine) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = new_page(browser, width=1400, height=900)
        page.goto(f"{served}/desk")
        page.locator("#desk-queue").get_by_text("网格 Grid", exact=False).first.click()
        cell = page.get_by_text("DESK-1", exact=True)
        expect(cell).to_be_visible(timeout=20_000)
        cell.click()  # acting as the county centre (the default): above the grid
        buttons = page.locator(".desk-action")
        expect(buttons.first).to_be_visible(timeout=20_000)
        with desk_engine.connect() as c:
            state = inc.state_of(c.execute(inc._LOCK_SQL, {"code": "DESK-1"}).one())
        legal = set(_labels(wf.allowed_actions(state, wf.Actor("county", "x", "y"))))
        assert set(buttons.all_inner_texts()) == legal
        page.get_by_role("button", name="核实 Verify").click()
        expect(page.locator(".desk-timeline")).to_contain_text("verify", timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "desk.png"))
        browser.close()
    with desk_engine.connect() as c:
        row = c.execute(text("SELECT status, version FROM events WHERE code = 'DESK-1'")).one()
    assert tuple(row) == ("verified", 2)


def _labels(actions: set[wf.Action]) -> list[str]:
    from dashboard.pages.desk import ACTION_NAMES

    return [ACTION_NAMES[a.value] for a in actions]
