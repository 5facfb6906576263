"""Stored and reflected XSS payloads in every free-text field a user can put on screen are shown
as literal text in real headless Chromium and never run.

Fields: an event's description and reporter name (``etl.incidents.report``), workflow actors and
notes/reasons (``etl.incidents.act``, and typed into the desk's card), a description typed into
the desk's report form, users' display names (``etl.accounts.add_user`` and the admin form),
refused user and token names echoed by the admin page, a token name written straight to the
table (the name pattern keeps it out of every form and the CLI: this checks the page would still
escape it), audit-log actors, targets and details, and user names typed into the login form
(refused logins are audited with the typed name). Pages: the desk's queue and case card, the
command centre (feed and the map's case card, which show no free text, only codes), the admin
page and its audit log, the login page (a refused login, a reflected ``next``, and a
``javascript:`` ``next`` after a good login).

After each page: ``window.__xss`` is undefined, no dialog opened, no element in the document
carries an ``onerror``/``onload`` attribute or a ``javascript:`` link, and each payload expected
there is visible as literal text (so the test cannot pass because nothing was shown).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, text

from dashboard.app import create_app
from etl import accounts, migrate
from etl import incidents as inc
from etl.deadlines import work_calendar
from etl.settings import Settings
from geo import workflow as wf
from tests.accounts import PASSWORD
from tests.browser import browser, new_page, serve, shot, wait_dash_idle
from tests.conftest import database_url, ensure_database
from tests.test_incidents_net import COUNTY, WEST, build_net

pytestmark = pytest.mark.browser

IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=1</script>"
SVG = '"><svg onload="window.__xss=1">'
JS = "javascript:window.__xss=1"
TEMPLATE = "{{7*7}}"
ALERT = "<img src=x onerror=alert(1)>"
SHORT = "<svg/onload=__xss=1>"  # fits the desk's 24-character "acting as" name
PAYLOADS = (IMG, SCRIPT, SVG, JS, TEMPLATE, ALERT)
DESCRIPTION = " | ".join(PAYLOADS)
CODE = "XSS-1"
TOKEN_NAME = SVG + " token"
CST = ZoneInfo("Asia/Shanghai")

# Each stored actor, note and display name is one payload, so each is checked on its own.
REPORTER = IMG
VERIFY_ACTOR, VERIFY_NOTE = SVG, SCRIPT
ESCALATE_ACTOR, ESCALATE_NOTE = TEMPLATE, JS
DISPLAY_NAMES = {f"xss-{i}": p for i, p in enumerate(PAYLOADS)}
AUDITED = (IMG, SCRIPT, SVG, JS, TEMPLATE)

_INERT = """() => ({
    xss: typeof window.__xss,
    handlers: document.querySelectorAll('[onerror], [onload]').length,
    jsLinks: [...document.querySelectorAll('[href], [src], [action], [formaction]')].filter(
        (el) => ['href', 'src', 'action', 'formaction'].some(
            (a) => /^\\s*javascript:/i.test(el.getAttribute(a) || ''))).length,
    text: document.body.innerText,
})"""


@pytest.fixture(scope="module")
def xss_engine() -> Iterator[Engine]:
    """A scratch database holding every payload in every stored free-text field."""
    url = database_url("_test_xss")
    ensure_database(url)
    migrate.upgrade(url)
    eng = create_engine(url)
    settings = Settings()
    with eng.begin() as c:
        c.execute(text("TRUNCATE units, events, event_history, event_categories, responders, "
                       "users, api_tokens, audit_log RESTART IDENTITY CASCADE"))  # fmt: skip
        build_net(c)
        cats = inc.load_categories(c)
        now = datetime.now(CST)
        reported = max(now - timedelta(hours=1), now.replace(hour=0, minute=0, second=0))
        rep = inc.Report("0201", 108.005, 32.005, reported, description=DESCRIPTION,
                         reporter=REPORTER, code=CODE)  # fmt: skip
        inc.report(c, rep, cats)
        cal = work_calendar(settings)
        inc.act(c, CODE, "verify", wf.Actor("grid", "grid_worker", VERIFY_ACTOR),
                calendar=cal, reason=VERIFY_NOTE)  # fmt: skip
        inc.act(c, CODE, "escalate", wf.Actor("grid", "grid_worker", ESCALATE_ACTOR),
                calendar=cal, reason=ESCALATE_NOTE)  # fmt: skip
        for name, shown in DISPLAY_NAMES.items():
            accounts.add_user(c, name, role="dispatcher", unit_code=WEST, password=PASSWORD,
                              display_name=shown)  # fmt: skip
        accounts.add_user(c, "xss.login", role="analyst", unit_code=COUNTY, password=PASSWORD)
        for bad in PAYLOADS:  # no form or CLI can name a token (or a user) like this …
            with pytest.raises(accounts.AccountError):
                accounts.add_token(c, bad, role="wall", unit_code=COUNTY, created_by="t")
            with pytest.raises(accounts.AccountError):
                accounts.add_user(c, bad, role="wall", unit_code=COUNTY, password=PASSWORD)
        # … but the table takes it: the admin page must still escape it
        c.execute(text("INSERT INTO api_tokens (name, token_hash, prefix, role, unit_code, "
                       "created_by) VALUES (:n, 'x', 'ggt_xss', 'wall', :u, 't')"),
                  {"n": TOKEN_NAME, "u": COUNTY})  # fmt: skip
        for p in AUDITED:
            accounts.audit(c, p, "login_failed", p, detail={"typed": p}, ip="127.0.0.9")
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def base_url(xss_engine: Engine) -> Iterator[str]:
    """The app served with an administrator of the county logged in (every new_page)."""
    app = create_app(Settings(), engine=xss_engine)
    with serve(app, role="admin") as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


class Watched:
    """A page whose dialogs are recorded (and dismissed, so nothing blocks)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def assert_inert(self, name: str, *, shown: tuple[str, ...] | list[str]) -> None:
        """Nothing ran and nothing became markup; every string in ``shown`` is visible text."""
        self.page.wait_for_timeout(800)  # a broken <img> fires onerror after its request fails
        shot(self.page, f"xss-{name}")
        state = self.page.evaluate(_INERT)
        assert state["xss"] == "undefined", f"{name}: a payload ran"
        assert not self.dialogs, f"{name}: a dialog opened: {self.dialogs}"
        assert state["handlers"] == 0, f"{name}: a payload became an element with a handler"
        assert state["jsLinks"] == 0, f"{name}: a javascript: URL became a link"
        missing = [s for s in shown if s not in state["text"]]
        assert not missing, f"{name}: not shown as text: {missing}"


def _watched(chromium: Any, *, logged_in: bool = True) -> Watched:
    if logged_in:
        return Watched(new_page(chromium, width=1600, height=1000))
    return Watched(chromium.new_page(viewport={"width": 1200, "height": 900}))


def _open_case(page: Any, queue: str, code: str) -> None:
    from playwright.sync_api import expect

    page.locator("#desk-queue").get_by_text(queue, exact=False).first.click()
    cell = page.locator("#desk-table").get_by_text(code, exact=True)
    expect(cell).to_be_visible(timeout=20_000)
    cell.click()
    expect(page.locator(".desk-card h3")).to_contain_text(code, timeout=20_000)


def test_desk_card_shows_stored_payloads_as_text(base_url: str, chromium: Any) -> None:
    w = _watched(chromium)
    w.page.goto(f"{base_url}/desk")
    _open_case(w.page, "社区 Community", CODE)  # escalated from the grid to the community
    timeline = w.page.locator(".desk-timeline li")
    assert timeline.count() == 3
    card = w.page.locator(".desk-card")
    assert card.locator("p").first.inner_text() == DESCRIPTION
    w.assert_inert("desk-card", shown=[*PAYLOADS, REPORTER, VERIFY_ACTOR, VERIFY_NOTE,
                                       ESCALATE_ACTOR, ESCALATE_NOTE])  # fmt: skip


def test_desk_typed_actor_and_reason_stay_text(base_url: str, chromium: Any) -> None:
    from playwright.sync_api import expect

    w = _watched(chromium)
    w.page.goto(f"{base_url}/desk")
    actor = w.page.locator("#desk-actor")
    actor.fill(SHORT)
    actor.press("Enter")
    _open_case(w.page, "社区 Community", CODE)
    w.page.locator("#desk-reason").fill(ALERT)
    w.page.get_by_role("button", name="上报上级 Escalate").click()
    expect(w.page.locator(".desk-msg")).to_contain_text("✓", timeout=20_000)
    expect(w.page.locator(".desk-timeline li")).to_have_count(4, timeout=20_000)
    last = w.page.locator(".desk-timeline li").last.inner_text()
    assert SHORT in last and ALERT in last
    w.assert_inert("desk-typed", shown=[SHORT, ALERT, DESCRIPTION])


def test_desk_report_form_description_stays_text(
    base_url: str, chromium: Any, xss_engine: Engine
) -> None:
    from playwright.sync_api import expect

    w = _watched(chromium)
    page = w.page
    page.goto(f"{base_url}/desk")
    page.get_by_text("上报事件 Report an event").click()
    category = page.locator("#desk-new-category")
    category.click()
    page.keyboard.type("0201")
    page.keyboard.press("Enter")
    page.locator("#desk-new-lon").fill("108.015")
    page.locator("#desk-new-lat").fill("32.005")
    typed = f"{SCRIPT} {IMG} {TEMPLATE}"
    page.locator("#desk-new-description").fill(typed)
    page.get_by_role("button", name="提交 Submit").click()
    msg = page.locator("#desk-new-msg")
    expect(msg).to_contain_text("✓", timeout=20_000)
    code = re.search(r"✓ (\S+)", msg.inner_text())
    assert code, msg.inner_text()
    with xss_engine.connect() as c:
        stored = c.execute(
            text("SELECT description FROM events WHERE code = :c"), {"c": code.group(1)}
        ).scalar_one()
    assert stored == typed
    _open_case(page, "网格 Grid", code.group(1))
    assert page.locator(".desk-card p").first.inner_text() == typed
    w.assert_inert("desk-report-form", shown=[typed])


def test_command_centre_shows_no_stored_text_and_runs_none(
    base_url: str, chromium: Any, xss_engine: Engine
) -> None:
    """The feed and the map's case card show codes, categories and units, never free text."""
    from playwright.sync_api import expect

    with xss_engine.connect() as c:
        event_id = c.execute(text("SELECT id FROM events WHERE code = :c"), {"c": CODE}).scalar()
    w = _watched(chromium)
    w.page.goto(f"{base_url}/?unit={COUNTY}")
    expect(w.page.locator("#cmd-feed")).to_contain_text(CODE, timeout=30_000)
    wait_dash_idle(w.page)
    w.assert_inert("command-feed", shown=[CODE])
    marker = w.page.locator(f".ev-wrap .ev[data-id='{event_id}']")
    expect(marker).to_be_visible(timeout=20_000)
    marker.click()
    expect(w.page.locator(".leaflet-popup-content")).to_contain_text(CODE, timeout=10_000)
    w.assert_inert("command-card", shown=[CODE])


def test_admin_page_and_audit_log_escape_stored_text(base_url: str, chromium: Any) -> None:
    w = _watched(chromium)
    w.page.goto(f"{base_url}/admin")
    w.assert_inert("admin", shown=[*DISPLAY_NAMES.values(), TOKEN_NAME])
    w.page.goto(f"{base_url}/admin/audit?action=login_failed")
    w.assert_inert("admin-audit", shown=[f"typed={p}" for p in AUDITED])
    rows = w.page.locator("table tr").all_inner_texts()
    for p in AUDITED:  # the actor and the target columns too
        assert any(r.count(p) >= 3 for r in rows), p


def test_admin_forms_echo_refused_names_as_text(base_url: str, chromium: Any) -> None:
    w = _watched(chromium)
    page = w.page
    page.goto(f"{base_url}/admin")
    users, tokens = page.locator("form.block").nth(0), page.locator("form.block").nth(1)
    users.locator("input[name=name]").fill(IMG)
    users.locator("input[name=display_name]").fill(SCRIPT)
    users.locator("input[name=unit]").fill(COUNTY)
    users.get_by_role("button").click()
    page.wait_for_load_state()
    w.assert_inert("admin-refused-user", shown=[IMG])
    users = page.locator("form.block").nth(0)
    users.locator("input[name=name]").fill("xss.form")
    users.locator("input[name=display_name]").fill(SVG)
    users.locator("input[name=unit]").fill(COUNTY)
    users.locator("select[name=role]").select_option("analyst")
    users.get_by_role("button").click()
    page.wait_for_load_state()
    w.assert_inert("admin-added-user", shown=["xss.form", SVG])
    tokens = page.locator("form.block").nth(1)
    tokens.locator("input[name=name]").fill(SCRIPT)
    tokens.locator("input[name=unit]").fill(COUNTY)
    tokens.get_by_role("button").click()
    page.wait_for_load_state()
    w.assert_inert("admin-refused-token", shown=[SCRIPT])


def test_login_form_with_payload_names(base_url: str, chromium: Any, xss_engine: Engine) -> None:
    from dashboard.login import TEXT

    w = _watched(chromium, logged_in=False)
    page = w.page
    page.goto(f"{base_url}/login?next={quote(SVG)}")  # reflected into the form's action
    w.assert_inert("login-next", shown=[TEXT["title"][0]])
    for p in AUDITED:
        page.goto(f"{base_url}/login")
        page.locator("#name").fill(p)
        page.locator("#password").fill("not-the-password")
        page.get_by_role("button").click()
        page.wait_for_load_state()
        w.assert_inert("login-refused", shown=[TEXT["refused"][0]])
    with xss_engine.connect() as c:
        typed = set(c.execute(text("SELECT target FROM audit_log WHERE action = 'login_failed' "
                                   "AND ip IS DISTINCT FROM '127.0.0.9'")).scalars())  # fmt: skip
    assert typed >= set(AUDITED)
    # a good login never follows a javascript: next
    page.goto(f"{base_url}/login?next={quote(JS)}")
    page.locator("#name").fill("xss.login")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button").click()
    page.wait_for_url(f"{base_url}/", timeout=20_000)
    w.assert_inert("login-next-javascript", shown=[])
    # what the login form audited, shown to an administrator
    admin = _watched(chromium)
    admin.page.goto(f"{base_url}/admin/audit?action=login_failed")
    rows = admin.page.locator("table tr").all_inner_texts()
    for p in AUDITED:  # typed at the form: actor and target (the seeded rows have detail too)
        assert any(r.count(p) == 2 and "127.0.0.1" in r for r in rows), p
    admin.assert_inert("login-audit", shown=list(AUDITED))
