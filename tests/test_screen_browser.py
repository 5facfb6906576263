"""The command centre in real headless Chromium against the demo county.

One server and one browser for the module (fast); screenshots of every state go to
artifacts/screens/. ``GRIDGOV_SCREEN_TEST_URL`` points the module at another database (a
development aid while the demo generator is unavailable); by default it uses ``demo_url``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import Engine, create_engine, text

from dashboard.app import create_app
from dashboard.i18n import t
from etl.settings import Settings
from tests.browser import browser, new_page, serve, shot, wait_dash_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def screen_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = os.environ.get("GRIDGOV_SCREEN_TEST_URL") or request.getfixturevalue("demo_url")
    engine = create_engine(url, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def as_of(screen_engine: Engine) -> datetime:
    """The screen looks at the data as of its latest report, so 'today' is the demo's last day."""
    with screen_engine.connect() as conn:
        return conn.execute(text("SELECT max(reported_at) FROM events")).scalar_one()


@pytest.fixture(scope="module")
def site(screen_engine: Engine, as_of: datetime) -> Iterator[str]:
    app = create_app(Settings(), engine=screen_engine, clock=lambda: as_of)
    with serve(app) as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


def open_screen(chromium: Any, url: str, errors: list[str]) -> Any:
    page = new_page(chromium, errors=errors)
    page.goto(url)
    page.wait_for_selector(".kpi", timeout=20000)
    page.wait_for_function("() => window.gridgov && window.gridgov.eventCount > 0", timeout=20000)
    wait_dash_idle(page)
    page.wait_for_timeout(800)  # let fitBounds and label placement settle before screenshots
    return page


def real_errors(errors: list[str]) -> list[str]:
    """Console noise that is not ours (canvas read-back hints) is ignored."""
    return [e for e in errors if "willReadFrequently" not in e]


def test_renders_every_layer(site: str, chromium: Any, screen_engine: Engine) -> None:
    errors: list[str] = []
    page = open_screen(chromium, site + "/", errors)
    checked = page.eval_on_selector_all(
        ".leaflet-control-layers-overlays input", "els => els.map(e => e.checked)"
    )
    assert checked and all(checked)
    assert page.locator(".lbl").count() > 0  # unit labels
    polygons = page.evaluate("""() => { let n = 0; window.gridgov.map.eachLayer(l => {
        if (l.feature && l.feature.geometry.type.endsWith('Polygon')) n++; }); return n; }""")
    assert polygons > 3  # outline, boundaries, bands (drawn on canvas)
    assert page.locator(".ev-wrap, .cl-wrap").count() > 0  # events, clustered
    assert page.locator("canvas.leaflet-heatmap-layer").count() == 1
    assert page.locator(".legend .legend-row").count() >= 5
    with screen_engine.connect() as conn:
        responders = conn.execute(
            text("SELECT count(*) FROM responders WHERE geom IS NOT NULL")
        ).scalar()
        x, y = conn.execute(text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) c FROM buildings "
                                 "ORDER BY households DESC LIMIT 1) b")).one()  # fmt: skip
    if responders:  # they come just after the first view is drawn
        page.wait_for_selector(".resp-wrap", timeout=5000)
        assert page.locator(".resp-wrap").count() > 0
    kpi = page.locator("#cmd-kpi-reported .kpi-value").inner_text()
    assert kpi.replace(",", "").isdigit()
    shot(page, "01-overview-1080p")
    # street level: buildings arrive as vector tiles from /tiles/buildings
    tiles: list[str] = []
    page.on("response", lambda r: tiles.append(r.url) if "/tiles/buildings/" in r.url else None)
    # braces: setView returns the map, which Playwright cannot serialise back
    page.evaluate(f"() => {{ window.gridgov.map.setView([{y}, {x}], 17, {{animate: false}}); }}")
    page.wait_for_function("() => (window.gridgov.tilesLoaded || 0) > 0", timeout=15000)
    page.wait_for_timeout(500)
    assert (
        tiles
        and page.locator(".leaflet-tile-container canvas, .leaflet-tile-container svg").count() > 0
    )
    shot(page, "02-buildings-street-level")
    assert not real_errors(errors), errors
    page.close()


def test_4k_wall_screen_scales(site: str, chromium: Any) -> None:
    errors: list[str] = []
    page = new_page(chromium, width=3840, height=2160, errors=errors)
    page.goto(site + "/")
    page.wait_for_selector(".kpi", timeout=20000)
    page.wait_for_function("() => window.gridgov && window.gridgov.eventCount > 0", timeout=20000)
    page.wait_for_timeout(800)
    size = page.eval_on_selector(".kpi-value", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 60  # 2.1 rem at 32 px per rem: legible across the room
    shot(page, "03-overview-4k")
    page.close()


def test_drilldown_and_url_round_trip(site: str, chromium: Any) -> None:
    errors: list[str] = []
    page = open_screen(chromium, site + "/?win=7d", errors)
    root = page.locator(".crumb.current").inner_text()
    # drill by the ranking (worst township first) ...
    first = page.locator(".rank-row").first
    town_name = first.locator(".rank-name").inner_text()
    first.click()
    page.wait_for_function(
        f"() => document.querySelector('.crumb.current')?.innerText === {town_name!r}"
    )
    wait_dash_idle(page)
    shot(page, "04-drill-township")
    # ... then by clicking the map on a community
    page.wait_for_timeout(1200)
    # a Leaflet click on the community's polygon (markers may cover its centre for a mouse)
    target = page.evaluate("""() => {
        let hit = null;
        window.gridgov.map.eachLayer(l => {
            if (!hit && l.feature && l.feature.properties.lx !== undefined && l.options.fillOpacity === 0.03) hit = l;
        });
        hit.fire('click', {latlng: L.latLng(hit.feature.properties.ly, hit.feature.properties.lx)}, true);
        return hit.feature.properties;
    }""")
    page.wait_for_function(
        f"() => document.querySelector('.crumb.current')?.innerText === {target['name']!r}"
    )
    wait_dash_idle(page)
    crumbs = page.locator(".crumb").all_inner_texts()
    assert crumbs[0] == root and crumbs[1] == town_name and crumbs[-1] == target["name"]
    shot(page, "05-drill-community")
    # the URL carries selection, window and layers; opening it restores the view
    query = parse_qs(urlparse(page.url).query)
    assert query["unit"] == [target["code"]] and query["win"] == ["7d"]
    assert set(query["layers"][0].split(",")) == {
        "bounds",
        "bands",
        "buildings",
        "heat",
        "events",
        "responders",
    }
    page.locator(".leaflet-control-layers-overlays label", has_text=t("layer.heat")).click()
    page.wait_for_function("() => !location.search.includes('heat')")
    bookmark = page.url
    again = open_screen(chromium, bookmark, errors)
    assert again.locator(".crumb.current").inner_text() == target["name"]
    assert again.locator("#cmd-win input[value='7d']").is_checked()
    heat_box = again.locator(
        ".leaflet-control-layers-overlays label", has_text=t("layer.heat")
    ).locator("input")
    assert not heat_box.is_checked()
    # the breadcrumb goes back up
    again.locator(".crumb", has_text=root).click()
    again.wait_for_function(
        f"() => document.querySelector('.crumb.current')?.innerText === {root!r}"
    )
    assert "unit=" in again.url
    # and the English switch keeps the view
    again.locator("#cmd-lang").click()
    again.wait_for_selector(".kpi", timeout=20000)
    assert again.locator(".brand .lang-en").is_visible()
    assert t("kpi.open", "en") in again.locator("#cmd-kpis").inner_text()
    shot(again, "06-english")
    assert not real_errors(errors), errors
    page.close()
    again.close()


def test_inserted_event_appears_within_two_seconds(
    site: str, chromium: Any, screen_engine: Engine, as_of: datetime
) -> None:
    errors: list[str] = []
    page = open_screen(chromium, site + "/", errors)
    page.wait_for_timeout(1500)  # a few idle ticks first
    code = f"LIVE-{uuid.uuid4().hex[:8]}"
    insert = text("""
        INSERT INTO events (code, geom, category_code, priority, channel, reported_at, status,
                            unit_id, unit_path, handling_level)
        SELECT :code, ST_PointOnSurface(u.geom), (SELECT min(code) FROM event_categories WHERE length(code) = 4),
               2, 'hotline', :at, 'reported', u.id, u.unit_path, 'grid'
        FROM units u WHERE u.valid_to IS NULL ORDER BY u.depth DESC, u.code LIMIT 1
        RETURNING id""")
    try:
        with screen_engine.begin() as conn:
            new_id = conn.execute(insert, {"code": code, "at": as_of}).scalar_one()
        committed = time.perf_counter()
        page.wait_for_selector(f".feed-item[data-code='{code}']", timeout=2000)
        page.wait_for_function(f"() => window.gridgov.eventIds.has({new_id})", timeout=2000)
        print(f"event-to-screen {time.perf_counter() - committed:.2f} s")
        shot(page, "07-live-event")
    finally:
        with screen_engine.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM event_history WHERE event_id IN (SELECT id FROM events WHERE code = :c)"
                ),
                {"c": code},
            )
            conn.execute(text("DELETE FROM events WHERE code = :c"), {"c": code})
    assert "stale" not in page.locator("#cmd-live-badge").get_attribute("class")
    assert not real_errors(errors), errors
    page.close()


def test_wall_mode_cycles_scenes(site: str, chromium: Any) -> None:
    errors: list[str] = []
    page = open_screen(chromium, site + "/?wall=1&cycle=4", errors)
    assert not page.locator(".controls").is_visible()
    assert not page.locator(".leaflet-control-layers").is_visible()
    seen: list[str] = []
    deadline = time.time() + 30
    while len(seen) < 4 and time.time() < deadline:
        title = page.locator("#cmd-scene-title").inner_text()
        if title and (not seen or seen[-1] != title):
            seen.append(title)
            page.wait_for_timeout(900)  # mid-flight of the scene's flyToBounds
            shot(page, f"08-wall-{len(seen)}")
        page.wait_for_timeout(150)
    assert seen[:4] == [t(f"scene.{s}") for s in ("hotspots", "overdue", "dispatch", "overview")]
    assert not real_errors(errors), errors
    page.close()


def test_page_recovers_after_database_outage(
    site: str, chromium: Any, screen_engine: Engine, as_of: datetime
) -> None:
    """Every connection of the page's database is killed and new ones refused (what clients see
    while PostgreSQL restarts): the badge turns stale, and once the database is back the page
    resumes by itself: a new event reaches the feed without a reload."""
    errors: list[str] = []
    page = open_screen(chromium, site + "/", errors)
    badge = page.locator("#cmd-live-badge")
    assert "ok" in (badge.get_attribute("class") or "")
    database = screen_engine.url.database
    admin = create_engine(screen_engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    code = f"BACK-{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})  # fmt: skip
        page.wait_for_function(
            "() => document.querySelector('#cmd-live-badge').className.includes('stale')",
            timeout=10000,
        )
        shot(page, "09-database-down")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        page.wait_for_function(
            "() => document.querySelector('#cmd-live-badge').className.includes('ok')",
            timeout=10000,
        )
        with screen_engine.begin() as conn:
            conn.execute(
                text("""INSERT INTO events (code, geom, category_code, priority, channel, reported_at,
                                           status, unit_id, unit_path, handling_level)
                        SELECT :code, ST_PointOnSurface(u.geom), (SELECT min(code) FROM event_categories
                               WHERE length(code) = 4), 2, 'hotline', :at, 'reported', u.id,
                               u.unit_path, 'grid'
                        FROM units u WHERE u.valid_to IS NULL ORDER BY u.depth DESC, u.code LIMIT 1"""),
                {"code": code, "at": as_of},
            )  # fmt: skip
        page.wait_for_selector(f".feed-item[data-code='{code}']", timeout=3000)
        shot(page, "10-database-back")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()
        with screen_engine.begin() as conn:
            conn.execute(text("DELETE FROM events WHERE code = :c"), {"c": code})
    # during the outage the server answers 503 (with Retry-After): expected, not an error
    assert not [e for e in real_errors(errors) if "500" not in e and "503" not in e], errors
    page.close()


def test_custom_window_from_the_url(site: str, chromium: Any, as_of: datetime) -> None:
    errors: list[str] = []
    day = as_of.date()
    start = day.replace(day=1)
    page = open_screen(chromium, f"{site}/?win=custom&from={start}&to={day}", errors)
    # Dash 4's DatePickerRange: the id is on the start input, the className on its wrapper
    assert page.locator("#cmd-range-wrapper").is_visible()
    assert page.locator("#cmd-range").input_value() == str(start)
    assert page.locator("#cmd-range-end-date").input_value() == str(day)
    query = parse_qs(urlparse(page.url).query)
    assert query["win"] == ["custom"] and query["from"] == [str(start)]
    # the trend has one bar per day of the window
    assert page.locator(".trend-col").count() == (day - start).days + 1
    # a fixed window hides the range and leaves it out of the URL
    page.locator("#cmd-win input[value='7d']").check()
    page.wait_for_function("() => !location.search.includes('from=')")
    assert not page.locator("#cmd-range-wrapper").is_visible()
    assert not real_errors(errors), errors
    page.close()
