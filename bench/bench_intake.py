"""Sustained event intake through the HTTP API (``make bench-intake``).

The dashboard (Dash app + incident API) is served by waitress in a subprocess against the
database ``<db>_bench_intake`` (the demo county at scale 0.25, built once; if the demo generator
fails, a lattice of 364 grids over the same county box). Concurrent clients on loopback (threads,
``http.client`` keep-alive connections) POST single reports to ``/api/v1/events`` for the given
duration: each report is validated, assigned to its finest unit, checked for duplicates and
stored with its first history row in one transaction. Meanwhile the command centre page can be
open and live in headless Chromium (``--browser``).

Afterwards every event is counted back from PostGIS by its client-given code: ``lost`` = events
the API acknowledged that are not stored, ``duplicated`` = codes stored more than once or events
without exactly one history row. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etl import migrate  # noqa: E402
from etl.db import ensure_database  # noqa: E402
from etl.db import sibling_database_url as database_url  # noqa: E402
from etl.demo import load_categories, read_categories  # noqa: E402

SERVE = """
import sys
from waitress import serve
from dashboard.app import create_app
from etl.settings import Settings
settings = Settings(database_url=sys.argv[1], port=int(sys.argv[2]))
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


def start_server(url: str, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, url, str(port), str(threads)], env=env, cwd=ROOT
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v1/categories")
            if c.getresponse().status == 200:
                return proc
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


def client(
    port: int, run: str, idx: int, stop: float, points: list, cats: list, out: dict, batch: int
) -> None:
    rng = random.Random(idx)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat_ms, acked, errors, i = [], [], 0, 0
    while time.perf_counter() < stop:
        codes = [f"BENCH-{run}-{idx}-{i}-{k}" for k in range(batch)]
        items = [_report(rng, c, points, cats) for c in codes]
        body = json.dumps(items if batch > 1 else items[0])
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/events", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        lat_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status in (200, 201):
            acked.extend(codes)
        else:
            errors += 1
        i += 1
    out[idx] = (lat_ms, acked, errors)


def open_command_centre(port: int, stop: threading.Event, seen: dict) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle", timeout=60_000)
        seen["opened"] = True
        while not stop.is_set():
            page.wait_for_timeout(1000)
        seen["final_text_len"] = len(page.inner_text("body"))
        browser.close()


def count_back(url: str, run: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        stored, distinct, bad_history = conn.execute(
            text("""
            SELECT count(*), count(DISTINCT code),
                   count(*) FILTER (WHERE (SELECT count(*) FROM event_history h
                                            WHERE h.event_id = e.id) <> 1)
            FROM events e WHERE code LIKE :p"""),
            {"p": f"BENCH-{run}-%"},
        ).one()
    engine.dispose()
    return stored, distinct, bad_history


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
    territory = prepare_database(url)
    rng = random.Random(5)
    points, cats = sample_points(url, 5000, rng)
    server = start_server(url, args.port, args.threads)
    run = f"{int(time.time())}"
    stop_browser, seen = threading.Event(), {}
    browser = None
    try:
        if args.browser:
            browser = threading.Thread(
                target=open_command_centre, args=(args.port, stop_browser, seen)
            )
            browser.start()
            t_wait = time.time() + 90
            while "opened" not in seen and time.time() < t_wait and browser.is_alive():
                time.sleep(0.2)
        out: dict = {}
        stop = time.perf_counter() + args.seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=client, args=(args.port, run, i, stop, points, cats, out, args.batch)
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        stop_browser.set()
        if browser is not None:
            browser.join(timeout=30)
        server.terminate()
        server.wait(timeout=30)
    lat = sorted(x for v in out.values() for x in v[0])
    acked = [c for v in out.values() for c in v[1]]
    errors = sum(v[2] for v in out.values())
    stored, distinct, bad_history = count_back(url, run)
    p95 = lat[int(0.95 * (len(lat) - 1))] if lat else None
    result = {
        "events_per_s": round(len(acked) / elapsed, 1),
        "p95_ms": round(p95, 1) if p95 is not None else None,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "lost": len(set(acked)) - stored if stored <= len(set(acked)) else 0,
        "duplicated": (stored - distinct) + bad_history,
        "stored": stored,
        "acked": len(acked),
        "errors": errors,
        "requests_per_s": round(len(lat) / elapsed, 1),
        "batch": args.batch,
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "server_threads": args.threads,
        "territory": territory,
        "command_centre_open": bool(seen.get("opened")),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
