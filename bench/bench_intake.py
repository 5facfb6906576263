"""Sustained event intake through the HTTP API (``make bench-intake``).

The dashboard (Dash app + incident API) is served by waitress in a subprocess against the
database ``<db>_bench_intake`` (the demo county at scale 0.25, built once; if the demo generator
fails, a lattice of 364 grids over the same county box), connected as the app role (row-level
security on, as in production). Concurrent clients on loopback (threads, ``http.client``
keep-alive connections) POST single reports to ``/api/v1/events`` for the given duration, each
request carrying a bearer token (role dispatcher at the root unit, made for the run and revoked
after it): each report is authenticated, validated, assigned to its finest unit, checked for
duplicates and stored with its first history row in one transaction. Meanwhile the command
centre page can be open and live in headless Chromium (``--browser``), logged in as a commander
through the login form.

Every request is counted: a non-2xx answer or no answer at all is a failed request (by status
in ``failures``); ``p50_ms``/``p95_ms`` cover every request sent, failed ones included, and
``p95_ok_ms``/``p95_failed_ms`` each kind apart. Afterwards the events are read back from
PostGIS by their client-given codes: ``lost`` = codes the API acknowledged that are not stored
(set difference), ``duplicated`` = codes stored more than once or events without exactly one
history row, ``stored_unacknowledged`` = stored codes whose request failed. Ends with one JSON
line."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_accounts import (  # noqa: E402
    bench_token,
    bench_user,
    browser_cookie,
    is_app_role,
    revoke_token,
    root_unit,
    session_cookie,
)

from etl import migrate  # noqa: E402
from etl.db import app_url_for, ensure_database  # noqa: E402
from etl.db import sibling_database_url as database_url  # noqa: E402
from etl.demo import load_categories, read_categories  # noqa: E402

SERVE = """
import sys
from waitress import serve
from dashboard.app import create_app
from etl.db import app_url_for
from etl.settings import Settings
# the app role: row-level security applies to every request, as in production
settings = Settings(database_url=sys.argv[1], app_database_url=app_url_for(sys.argv[1]),
                    port=int(sys.argv[2]))
app = create_app(settings)
serve(app.server, host="127.0.0.1", port=int(sys.argv[2]), threads=int(sys.argv[3]),
      connection_limit=200, channel_timeout=30, _quiet=True)
"""


def prepare_database(url: str) -> str:
    ensure_database(url)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        units = conn.execute(text("SELECT count(*) FROM units")).scalar()
        conn.execute(text("DELETE FROM events WHERE code LIKE 'BENCH-%'"))
    if units:
        engine.dispose()
        return "existing"
    kind = "demo"
    try:
        from etl.demo import load_demo

        load_demo(engine, seed=11, scale=0.25)
    except Exception as exc:  # the demo generator is optional here: say so and go on
        print(
            f"demo county unavailable ({type(exc).__name__}: {exc}); using a lattice",
            file=sys.stderr,
        )
        with engine.begin() as conn:
            lattice(conn)
        kind = "lattice"
    engine.dispose()
    return kind


def lattice(conn) -> None:  # noqa: ANN001
    """County 511781 > 1 township > 28 communities > 364 grids (13 per community), squares."""
    load_categories(conn, read_categories())
    x0, y0, w, h = 107.6, 31.6, 1.0, 0.7
    box = "ST_Multi(ST_MakeEnvelope(:a, :b, :c, :d, 4490))"
    ins = f"""INSERT INTO units (code, name, level, kind, parent_id, parent_code, depth, unit_path, geom)
              SELECT :code, :code, :level, 'urban', p.id, :parent, :depth,
                     COALESCE(p.unit_path, '{{}}') || CAST(:code AS varchar), {box}
              FROM (SELECT 1) one LEFT JOIN units p ON p.code = :parent"""
    whole = {"a": x0, "b": y0, "c": x0 + w, "d": y0 + h}
    conn.execute(
        text(ins), {"code": "511781", "level": "county", "parent": None, "depth": 0, **whole}
    )
    conn.execute(
        text(ins),
        {"code": "511781001", "level": "township", "parent": "511781", "depth": 1, **whole},
    )
    cols, rows = 26, 14  # 364 cells; each community is a 13x1 strip of two half-rows
    for r in range(rows):
        for c in range(cols):
            comm = f"511781001{(r * 2 + c // 13) + 1:03d}"
            if c % 13 == 0:
                strip = {
                    "a": x0 + (c // 13) * w / 2,
                    "b": y0 + r * h / rows,
                    "c": x0 + (c // 13 + 1) * w / 2,
                    "d": y0 + (r + 1) * h / rows,
                }
                conn.execute(
                    text(ins),
                    {
                        "code": comm,
                        "level": "community",
                        "parent": "511781001",
                        "depth": 2,
                        **strip,
                    },
                )
            cell = {
                "a": x0 + c * w / cols,
                "b": y0 + r * h / rows,
                "c": x0 + (c + 1) * w / cols,
                "d": y0 + (r + 1) * h / rows,
            }
            conn.execute(
                text(ins),
                {
                    "code": f"{comm}{c % 13 + 1:03d}",
                    "level": "grid",
                    "parent": comm,
                    "depth": 3,
                    **cell,
                },
            )


def sample_points(
    url: str, n: int, rng: random.Random
) -> tuple[list[tuple[float, float]], list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        pts = conn.execute(
            text("""
            SELECT ST_X(p), ST_Y(p) FROM (
              SELECT ST_PointOnSurface(geom) p FROM units u WHERE valid_to IS NULL AND NOT EXISTS (
                SELECT 1 FROM units c WHERE c.parent_id = u.id AND c.valid_to IS NULL)) s""")
        ).all()
        cats = list(
            conn.execute(
                text("""SELECT code FROM event_categories c WHERE NOT EXISTS (
            SELECT 1 FROM event_categories k WHERE k.parent_code = c.code)""")
            ).scalars()
        )
    engine.dispose()
    return [rng.choice(pts) for _ in range(n)], cats


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_server(url: str, port: int, threads: int, token: str) -> subprocess.Popen:
    if port_in_use(port):  # another server (another bench?) would answer in ours' place
        raise SystemExit(f"port {port} is in use: pass another --port")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, url, str(port), str(threads)], env=env, cwd=ROOT
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v1/categories", headers={"Authorization": f"Bearer {token}"})
            resp = c.getresponse()
            resp.read()
            if resp.status == 200 and proc.poll() is None:
                return proc
            proc.kill()
            raise SystemExit(f"the server refused the bench token: {resp.status}")
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not come up")


def _report(rng: random.Random, code: str, points: list, cats: list) -> dict:
    x, y = rng.choice(points)
    return {
        "code": code,
        "category_code": rng.choice(cats),
        "channel": "app",
        "lon": x + rng.uniform(-2e-4, 2e-4),
        "lat": y + rng.uniform(-2e-4, 2e-4),
        "description": "bench",
    }


@dataclass
class ClientLog:
    """What one client saw: latencies of answered-2xx and of failed requests (non-2xx answers
    and requests that got no answer: connection errors, time-outs), and the codes acknowledged."""

    ok_ms: list[float] = field(default_factory=list)
    failed_ms: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)  # "500", "401", "no answer", ...
    acked: list[str] = field(default_factory=list)
    first_failure: str | None = None


def client(
    port: int, token: str, run: str, idx: int, stop: float, points: list, cats: list,
    out: dict, batch: int,
) -> None:  # fmt: skip
    rng = random.Random(idx)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    log, i = ClientLog(), 0
    while time.perf_counter() < stop:
        codes = [f"BENCH-{run}-{idx}-{i}-{k}" for k in range(batch)]
        i += 1  # a code is never sent twice, whatever happened to the request that carried it
        items = [_report(rng, c, points, cats) for c in codes]
        body = json.dumps(items if batch > 1 else items[0])
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/events", body, headers)
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            log.failed_ms.append((time.perf_counter() - t0) * 1000)
            log.failures["no answer"] += 1
            log.first_failure = log.first_failure or f"{type(exc).__name__}: {exc}"
            conn.close()
            time.sleep(0.05)  # a server that is gone must not turn the client into a busy loop
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        ms = (time.perf_counter() - t0) * 1000
        if 200 <= resp.status < 300:
            log.ok_ms.append(ms)
            log.acked.extend(codes)
        else:
            log.failed_ms.append(ms)
            log.failures[str(resp.status)] += 1
            log.first_failure = log.first_failure or f"{resp.status}: {answer[:300]!r}"
    out[idx] = log


def open_command_centre(port: int, cookie: str, stop: threading.Event, seen: dict) -> None:
    """The command centre open and live in headless Chromium, logged in as a commander."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.context.add_cookies([browser_cookie(cookie)])  # type: ignore[list-item]
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle", timeout=60_000)
        seen["url"] = page.url
        # the page is the command centre (not the login form) and its live cursor is running
        page.wait_for_function("() => window.gridgov && window.gridgov.eventCount > 0",
                               timeout=60_000)  # fmt: skip
        seen["opened"] = True
        while not stop.is_set():
            page.wait_for_timeout(1000)
        seen["final_text_len"] = len(page.inner_text("body"))
        browser.close()


def count_back(url: str, run: str) -> tuple[set[str], int, int]:
    """(the set of stored codes of this run, stored rows, events without exactly one history row)"""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("""
            SELECT e.code, (SELECT count(*) FROM event_history h WHERE h.event_id = e.id) AS n
            FROM events e WHERE code LIKE :p"""),
            {"p": f"BENCH-{run}-%"},
        ).all()
    engine.dispose()
    return {r.code for r in rows}, len(rows), sum(1 for r in rows if r.n != 1)


def server_roles(url: str) -> list[str]:
    """The roles connected to the bench database right now, other than this look-up's."""
    engine = create_engine(url)
    with engine.connect() as conn:
        roles = conn.execute(
            text(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )  # fmt: skip
        ).scalars()
        found = sorted(str(r) for r in roles)
    engine.dispose()
    return found


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 1) if ordered else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--batch", type=int, default=1, help="reports per request (JSON array if > 1)")
    ap.add_argument(
        "--browser",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the command centre page open in headless Chromium",
    )
    args = ap.parse_args()
    url = database_url("_bench_intake")
    if not is_app_role(app_url_for(url), url):
        raise SystemExit("the app role's URL logs in as the owner: set GRIDGOV_APP_DATABASE_URL")
    territory = prepare_database(url)
    rng = random.Random(5)
    points, cats = sample_points(url, 5000, rng)
    owner = create_engine(url)
    root = root_unit(owner)
    token_id, token = bench_token(owner, "bench-intake", "dispatcher", root)
    password = bench_user(owner, "bench-commander", "commander", root) if args.browser else ""
    owner.dispose()  # no owner connection stays open: server_db_roles names the server's roles
    server = start_server(url, args.port, args.threads, token)
    run = f"{int(time.time())}"
    stop_browser, seen = threading.Event(), {}
    browser = None
    roles: list[str] = []
    try:
        if args.browser:
            cookie = session_cookie(f"http://127.0.0.1:{args.port}", "bench-commander", password)
            browser = threading.Thread(
                target=open_command_centre, args=(args.port, cookie, stop_browser, seen)
            )
            browser.start()
            t_wait = time.time() + 90
            while "opened" not in seen and time.time() < t_wait and browser.is_alive():
                time.sleep(0.2)
        out: dict[int, ClientLog] = {}
        stop = time.perf_counter() + args.seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=client,
                args=(args.port, token, run, i, stop, points, cats, out, args.batch),
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        time.sleep(min(5.0, args.seconds / 2))
        roles = server_roles(url)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        server_exit = server.poll()  # None: the server was still up at the end of the run
    finally:
        stop_browser.set()
        if browser is not None:
            browser.join(timeout=30)
        server.terminate()
        server.wait(timeout=30)
        revoke_token(owner, token_id)
        owner.dispose()
    logs = list(out.values())
    ok_ms = [x for g in logs for x in g.ok_ms]
    failed_ms = [x for g in logs for x in g.failed_ms]
    every_ms = ok_ms + failed_ms
    failures: Counter = sum((g.failures for g in logs), Counter())
    acked = {c for g in logs for c in g.acked}
    stored_codes, stored, bad_history = count_back(url, run)
    result = {
        "events_per_s": round(len(acked) / elapsed, 1),
        # latencies of every request sent, failed ones included; then each kind on its own
        "p95_ms": percentile(every_ms, 0.95),
        "p50_ms": percentile(every_ms, 0.5),
        "p95_ok_ms": percentile(ok_ms, 0.95),
        "p95_failed_ms": percentile(failed_ms, 0.95),
        "lost": len(acked - stored_codes),  # acknowledged but not stored
        "duplicated": (stored - len(stored_codes)) + bad_history,
        "stored_unacknowledged": len(stored_codes - acked),  # e.g. a timed-out request's
        "stored": stored,
        "acked": len(acked),
        "requests": len(every_ms),
        "failed_requests": len(failed_ms),
        "failures": dict(failures),
        "first_failure": next((g.first_failure for g in logs if g.first_failure), None),
        "requests_per_s": round(len(every_ms) / elapsed, 1),
        "batch": args.batch,
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "server_threads": args.threads,
        "auth": "bearer token (dispatcher, root unit)",
        "server_db_roles": roles,
        "server_alive_at_end": server_exit is None,
        "territory": territory,
        "command_centre_open": bool(seen.get("opened")),
        "command_centre_url": seen.get("url"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
