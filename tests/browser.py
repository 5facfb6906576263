"""Helpers for page tests in real headless Chromium (Playwright, the system's /usr/bin/chromium).

    with serve(app) as base_url, browser() as b:
        page = new_page(b)
        page.goto(base_url + "/?unit=...")

Screenshots go to ``artifacts/screens/`` (ignored by git) through :func:`shot`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "artifacts" / "screens"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SESSION: dict[str, str] = {}
"""The session cookie of the last app served (pages opened by :func:`new_page` carry it)."""


@contextmanager
def serve(app: Any, *, role: str | None = "admin", unit_code: str | None = None) -> Iterator[str]:
    """Serve a Dash app (or a Flask server) in a background thread; yields the base URL.

    With ``role`` (default: an administrator of the root unit) a user of that role is created
    and logged in; every :func:`new_page` then starts with that session. ``role=None``: no one.
    """
    from tests.accounts import login_cookie

    server_app = getattr(app, "server", app)
    SESSION.clear()
    if role is not None:
        SESSION["cookie"] = login_cookie(server_app, role, unit_code)
    port = free_port()
    server = make_server("127.0.0.1", port, server_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium; never downloads a browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def new_page(
    b: Any, *, width: int = 1920, height: int = 1080, errors: list[str] | None = None
) -> Any:
    """A page of the given viewport; JS errors and console errors are appended to ``errors``.

    It carries the session of the app last served (:func:`serve`), as a logged-in user's would.
    """
    page = b.new_page(viewport={"width": width, "height": height})
    if SESSION.get("cookie"):
        page.context.add_cookies([{"name": "gridgov_session", "value": SESSION["cookie"],
                                   "domain": "127.0.0.1", "path": "/", "httpOnly": True,
                                   "sameSite": "Lax"}])  # fmt: skip
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on(
            "console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None
        )
    return page


def shot(page: Any, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_dash_idle(page: Any, timeout_ms: int = 20000) -> None:
    """Wait until Dash has no callback in flight (the renderer marks the document title/loading)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=timeout_ms
    )
