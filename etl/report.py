"""``python -m etl report``: a unit's per-grid coverage report as XLSX, CSV, GPKG, SHP or PDF.

    python -m etl report --unit 511781 --period 2026-10 --format xlsx --out oct.xlsx
    python -m etl report --unit 511781001 --period 2026-10-01..2026-10-15 --format pdf \
        --out first-half.pdf --lang en --indicator close_rt

Exit 2 with a message on stderr for an unknown unit, a bad period or a bad option.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.export import FORMATS, ExportError, export, numeric_indicators
from etl.queries import Scope
from etl.queries.reports import ReportError, coverage_report, parse_period


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-grid coverage report of a unit for a period",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--unit", required=True, help="unit code (county, township, community, …)")
    p.add_argument("--period", required=True,
                   help="YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (ends included)")  # fmt: skip
    p.add_argument("--format", dest="fmt", choices=FORMATS, help="default: from --out's suffix")
    p.add_argument("--out", required=True, type=Path, help="output file")
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="headers and labels")
    p.add_argument("--indicator", default="reported", help="PDF map colour (a numeric column)")
    p.add_argument("--asof", help="look at the data as of this ISO time (default: now)")
    p.add_argument("--bandwidth", type=float, default=800.0, help="kernel density bandwidth, m")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from etl.db import get_engine
    from etl.settings import get_settings

    settings = get_settings()
    fmt = args.fmt or args.out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        return _fail(f"format {fmt!r} is not one of {', '.join(FORMATS)} (use --format)")
    if args.indicator not in numeric_indicators():
        return _fail(
            f"indicator {args.indicator!r} is not one of {', '.join(numeric_indicators())}"
        )
    try:
        period = parse_period(args.period)
        asof = _asof(args.asof, settings.timezone)
        say = _progress()
        say(f"reading {args.unit} for {period.label}")
        report = coverage_report(get_engine(settings), Scope(), unit=args.unit, period=period,
                                 asof=asof, tz=settings.timezone, bands=settings.bands,
                                 bandwidth=args.bandwidth)  # fmt: skip
        say(f"{len(report.grids)} grids, {len(report.rows) - len(report.grids)} subtotals")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        files = export(report, args.out, fmt=fmt, lang=args.lang, indicator=args.indicator,
                       progress=say)  # fmt: skip
    except (ReportError, ExportError) as exc:
        return _fail(str(exc))
    for f in files:
        print(f)
    return 0


def _asof(value: str | None, tz: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError(f"--asof {value!r} is not an ISO date/time") from None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(tz))


def _progress() -> Callable[[str], None]:
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return say
