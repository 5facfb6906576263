"""``python -m etl demo``: build the demo county (万源市) from a seed and load it.

Real: the county outline, the 31 townships/streets and 298 communities/villages with their 2023
codes (data/). Synthetic but plausible (geo.synth): everything inside them. The demo replaces
all loaded data in one transaction.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
from pyproj import CRS
from sqlalchemy import Connection, Engine, text

from etl.db import transaction
from etl.deadlines import UNIT_OF, work_calendar
from etl.errors import ValidationFailed
from etl.load import Progress, stderr_progress, write_prepared
from etl.prepare import prepare
from etl.readers import Source
from etl.reference import Reference
from etl.settings import PROJECT_ROOT, get_settings
from geo.topology import resolve_sibling_overlaps

DATA = PROJECT_ROOT / "data"
GENERATOR_VERSION = "4"
DATA_TABLES = (
    "event_history",
    "events",
    "patrols",
    "staff",
    "responder_positions",
    "responders",
    "buildings",
    "roads",
    "units",
)
LOAD_ORDER = ("units", "roads", "buildings", "staff", "responders", "patrols", "events")


def read_inputs() -> tuple[object, pd.DataFrame, pd.DataFrame]:
    outline = gpd.read_file(DATA / "wanyuan_outline.geojson").to_crs(4490).geometry.iloc[0]
    divisions = pd.read_csv(DATA / "wanyuan_divisions_2023.csv", dtype=str)
    categories = read_categories()
    return outline, divisions, categories


def read_categories(path: Path = DATA / "event_categories.csv") -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"code": str, "parent_code": str})
    frame["emergency"] = frame["emergency"].astype(str).str.lower() == "true"
    return frame


def load_categories(conn: Connection, categories: pd.DataFrame) -> None:
    """Upsert the category tree, parents first."""
    rows = categories.sort_values("code", key=lambda c: c.str.len()).to_dict("records")
    sql = text("""
        INSERT INTO event_categories (code, name, name_en, parent_code, default_priority, time_limit,
                                      time_unit, department, emergency)
        VALUES (:code, :name, :name_en, :parent_code, :default_priority, :time_limit, :time_unit,
                :department, :emergency)
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, name_en = EXCLUDED.name_en,
            parent_code = EXCLUDED.parent_code, default_priority = EXCLUDED.default_priority,
            time_limit = EXCLUDED.time_limit, time_unit = EXCLUDED.time_unit,
            department = EXCLUDED.department, emergency = EXCLUDED.emergency""")
    for row in rows:
        conn.execute(sql, {k: (None if pd.isna(v) else v) for k, v in row.items()})


def demo_fingerprint(seed: int, scale: float) -> str:
    inputs = b"".join(
        (DATA / f).read_bytes()
        for f in ("wanyuan_outline.geojson", "wanyuan_divisions_2023.csv", "event_categories.csv")
    )
    key = f"{seed}:{scale}:{GENERATOR_VERSION}:".encode() + inputs
    return hashlib.sha256(key).hexdigest()


def already_loaded(engine: Engine, fingerprint: str) -> bool:
    sql = text(
        "SELECT 1 FROM etl_runs WHERE kind = 'demo' AND sha256 = :sha AND status = 'ok' "
        "AND id = (SELECT max(id) FROM etl_runs) LIMIT 1"
    )
    with engine.connect() as conn:
        return conn.execute(sql, {"sha": fingerprint}).first() is not None


def load_demo(
    engine: Engine | Connection,
    *,
    seed: int,
    scale: float = 1.0,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    from geo.synth import build_demo_county

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    outline, divisions, categories = read_inputs()
    say(f"building the demo county (seed {seed}, scale {scale})")
    county = build_demo_county(outline, divisions, categories, rng=seed, end=end, scale=scale)
    counts: dict[str, int] = {}
    with transaction(engine) as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
        load_categories(conn, categories)
        for kind in LOAD_ORDER:
            frame = getattr(county, kind)
            if kind == "units":
                frame = resolve_sibling_overlaps(frame, group_col="parent_code")
            if kind == "events":
                frame = _with_deadlines(frame, categories)
            counts[kind] = _load_frame(conn, kind, frame)
            say(f"loaded {counts[kind]:,} {kind}")
        _event_history(conn)
        _log(conn, demo_fingerprint(seed, scale), counts, time.perf_counter() - started)
    say(f"demo county loaded in {time.perf_counter() - started:.1f} s")
    return counts


def _with_deadlines(events: pd.DataFrame, categories: pd.DataFrame) -> pd.DataFrame:
    """due_at from each category's limit on the working calendar, the clock starting at dispatch.

    Computed before the insert, so the change cursor (rev) follows the order of reports."""
    calendar = work_calendar(get_settings())
    limits: dict[str, tuple[float, str]] = {
        str(c): (float(limit), str(unit))
        for c, limit, unit in zip(
            categories["code"], categories["time_limit"], categories["time_unit"], strict=True
        )
        if pd.notna(limit) and unit in UNIT_OF
    }
    due: list[object] = []
    for cat, dispatched in zip(events["category_code"], events["dispatched_at"], strict=True):
        if pd.isna(dispatched) or cat not in limits:
            due.append(None)
            continue
        limit, unit = limits[cat]
        due.append(calendar.due_at(dispatched.to_pydatetime(), limit, UNIT_OF[unit]))
    return events.assign(
        due_at=pd.to_datetime(pd.Series(due, index=events.index, dtype=object), utc=True)
    )


def _load_frame(conn: Connection, kind: str, frame: pd.DataFrame) -> int:
    crs = CRS.from_epsg(4490) if isinstance(frame, gpd.GeoDataFrame) else None
    source = Source(frame=frame, stated_crs=crs, encoding=None, path=Path(f"demo-{kind}"))
    prepared = prepare(kind, source, Reference(conn))
    if prepared.rejects:
        raise ValidationFailed(f"demo {kind}", prepared.rejects)
    write_prepared(conn, prepared)
    return len(prepared.frame)


def _event_history(conn: Connection) -> None:
    """The demo's history rows, one per milestone the generator set."""
    conn.execute(
        text("""
        INSERT INTO event_history (event_id, at, actor, actor_level, action, from_status, to_status,
                                   from_level, to_level, note)
        SELECT e.id, m.at, m.actor, m.level, m.action, m.from_status, m.to_status,
               e.handling_level, e.handling_level, 'demo'
        FROM events e CROSS JOIN LATERAL (VALUES
            (e.reported_at, 'reporter', 'grid', 'report', NULL, 'reported'),
            (greatest(e.reported_at, e.dispatched_at - interval '10 minutes'), 'centre', e.handling_level,
             'verify', 'reported', 'verified'),
            (greatest(e.reported_at, e.dispatched_at - interval '5 minutes'), 'centre', e.handling_level,
             'file', 'verified', 'filed'),
            (e.dispatched_at, 'centre', e.handling_level, 'dispatch', 'filed', 'dispatched'),
            (e.handled_at, 'handler', e.handling_level, 'report_back', 'in_progress', 'handled'),
            (e.closed_at, 'centre', e.handling_level, 'close', 'checked', 'closed')
        ) AS m(at, actor, level, action, from_status, to_status)
        WHERE m.at IS NOT NULL""")
    )


def _log(conn: Connection, fingerprint: str, counts: dict[str, int], duration: float) -> None:
    conn.execute(
        text("""
        INSERT INTO etl_runs (kind, path, sha256, finished_at, duration_s, loaded, updated, unchanged,
                              rejected, status, message)
        VALUES ('demo', 'geo.synth', :sha, now(), :dur, :n, 0, 0, 0, 'ok', :msg)"""),
        {
            "sha": fingerprint,
            "dur": round(duration, 3),
            "n": sum(counts.values()),
            "msg": ", ".join(f"{k}={v}" for k, v in counts.items()),
        },
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from etl.db import get_engine

    engine = get_engine()
    seed = args.seed if args.seed is not None else get_settings().demo_seed
    if args.if_needed and already_loaded(engine, demo_fingerprint(seed, args.scale)):
        print("demo county already loaded (same seed and inputs): nothing to do")
        return 0
    counts = load_demo(engine, seed=seed, scale=args.scale, progress=stderr_progress)
    print(", ".join(f"{k}: {v:,}" for k, v in counts.items()), file=sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build and load the demo county 万源市 (replaces loaded data)")
    p.add_argument("--seed", type=int, help="random seed (default GRIDGOV_DEMO_SEED, 7)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="fraction of households/events to build"
    )
    p.add_argument(
        "--if-needed", action="store_true", help="skip when the same demo is already loaded"
    )
    p.set_defaults(func=_cmd_demo)
