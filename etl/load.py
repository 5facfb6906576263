"""``python -m etl load KIND PATH``: read, validate, then write all-or-nothing in one transaction."""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection, Engine, text

from etl.db import transaction
from etl.errors import LoadError, ValidationFailed
from etl.prepare import Prepared, prepare
from etl.readers import ReadAhead, feature_count, read_batches, read_source
from etl.reference import Reference
from etl.schema import KINDS, parse_map
from etl.write import (
    WRITERS,
    Counts,
    LeafUnits,
    events_arrow,
    reassign_all,
    refresh_totals,
    write_arrow,
)

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class LoadResult:
    kind: str
    path: str
    total: int
    counts: Counts
    rejected: int
    warnings: list[str]
    run_id: int
    duration_s: float


def file_sha256(path: Path) -> str:
    if not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_file(
    engine: Engine | Connection,
    kind: str,
    path: str | Path,
    *,
    crs: str | None = None,
    level: str | None = None,
    encoding: str | None = None,
    mapping: dict[str, str] | None = None,
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    layer: str | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load one file of ``kind``. Refuses (LoadError, database unchanged) unless every row is
    valid or ``skip_invalid`` is set, in which case bad rows go to ``rejects_path``."""
    if kind not in KINDS:
        raise LoadError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    say = progress or (lambda _m: None)
    path = Path(path)
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as hasher:
        sha256 = hasher.submit(file_sha256, path)  # hashing releases the GIL: it runs alongside
        rows = feature_count(path, layer=layer) if kind in SLICED_WRITERS and not encoding else None
        with transaction(engine) as conn:
            if rows is not None and rows >= SLICED_MIN_ROWS:
                say(f"loading {rows:,} {kind} from {path} in slices of {SLICE_ROWS:,}")
                prepared, counts = _load_in_slices(
                    conn, kind, path, rows, crs=crs, mapping=mapping, layer=layer,
                    skip_invalid=skip_invalid, say=say,
                )  # fmt: skip
                _refuse_or_report(
                    prepared, path, skip_invalid=skip_invalid, rejects_path=rejects_path
                )
            else:
                say(f"reading {path}")
                source = read_source(path, encoding=encoding, layer=layer)
                say(f"read {len(source.frame):,} rows; validating")
                ref = Reference(conn)
                prepared = prepare(kind, source, ref, crs=crs, level=level, mapping=mapping)
                _refuse_or_report(
                    prepared, path, skip_invalid=skip_invalid, rejects_path=rejects_path
                )
                say(f"writing {len(prepared.frame):,} rows")
                counts = write_prepared(conn, prepared)
            duration = time.perf_counter() - started
            warnings = prepared.warnings + _kept_warning(kind, counts)
            run_id = _log_run(
                conn, kind, path, prepared, counts, duration, sha256.result(), warnings
            )
    say(
        f"done in {duration:.1f} s: {counts.inserted:,} new, {counts.updated:,} updated, "
        f"{counts.unchanged:,} unchanged, {counts.kept:,} kept, "
        f"{len(prepared.rejects):,} rejected"
    )
    return LoadResult(
        kind,
        str(path),
        prepared.total,
        counts,
        len(prepared.rejects),
        warnings,
        run_id,
        duration,
    )


def _kept_warning(kind: str, counts: Counts) -> list[str]:
    if not counts.kept:
        return []
    more = (
        f" and {counts.kept - len(counts.kept_codes)} more"
        if counts.kept > len(counts.kept_codes)
        else ""
    )
    return [
        f"{counts.kept} {kind} already in the workflow were left unchanged (a load does not "
        f"change a case someone has acted on; use its workflow actions): "
        f"{', '.join(counts.kept_codes)}{more}"
    ]


# Kinds whose checks are all row by row (and duplicate codes, tracked across slices): a large
# GeoPackage of them is read, validated and written in slices, so the database copies one
# slice while the next is read and validated. Value: (Arrow builder, table, natural key).
SLICED_WRITERS = {"events": (events_arrow, "events", "(code)")}
SLICED_MIN_ROWS = 200_000
SLICE_ROWS = 131_072


def _load_in_slices(
    conn: Connection,
    kind: str,
    path: Path,
    rows: int,
    *,
    crs: str | None,
    mapping: dict[str, str] | None,
    layer: str | None,
    skip_invalid: bool,
    say: Progress,
) -> tuple[Prepared, Counts]:
    """Like ``prepare`` then ``write_prepared``, a slice at a time, in the caller's transaction.
    Every slice is validated; once a bad row is found (without ``skip_invalid``) nothing more
    is written, and after the last slice the load is refused with every bad row listed."""
    build, table, key = SLICED_WRITERS[kind]
    summary = Prepared(kind, pd.DataFrame())
    seen_codes: set[str] = set()
    with ReadAhead(read_batches(path, rows=SLICE_ROWS, layer=layer)) as slices:
        ref, leaves = Reference(conn), LeafUnits.load(conn, expected_points=rows)

        def parts() -> Iterator[pa.Table]:
            for first_row, source in slices:
                part = prepare(
                    kind, source, ref, crs=crs, mapping=mapping, first_row=first_row,
                    seen_codes=seen_codes,
                )  # fmt: skip
                summary.total += part.total
                summary.rejects += part.rejects
                summary.warnings += [w for w in part.warnings if w not in summary.warnings]
                say(f"{summary.total:,} of {rows:,} validated, {len(summary.rejects):,} rejected")
                if skip_invalid or not summary.rejects:
                    yield build(part.frame, leaves)
            if summary.rejects and not skip_invalid:
                raise ValidationFailed(str(path), summary.rejects)

        counts = write_arrow(conn, table, parts(), key, expected_rows=rows, say=say)
    return summary, counts


def write_prepared(conn: Connection, prepared: Prepared) -> Counts:
    counts = WRITERS[prepared.kind](conn, prepared.frame) if len(prepared.frame) else Counts()
    if prepared.kind == "units":
        reassign_all(conn)
    if prepared.kind in ("units", "buildings"):
        refresh_totals(conn)
    return counts


def _refuse_or_report(prepared: Prepared, path: Path, *, skip_invalid: bool, rejects_path) -> None:  # noqa: ANN001
    if prepared.rejects and not skip_invalid:
        raise ValidationFailed(str(path), prepared.rejects)
    if prepared.rejects and rejects_path:
        write_rejects(Path(rejects_path), prepared.rejects)


def write_rejects(path: Path, rejects: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "reason"])
        writer.writerows(rejects)


def _log_run(
    conn: Connection,
    kind: str,
    path: Path,
    prepared: Prepared,
    counts: Counts,
    duration: float,
    sha256: str,
    warnings: list[str],
) -> int:
    sql = text("""
        INSERT INTO etl_runs (kind, path, sha256, finished_at, duration_s, loaded, updated, unchanged,
                              rejected, status, message)
        VALUES (:kind, :path, :sha, now(), :dur, :ins, :upd, :same, :rej, 'ok', :msg) RETURNING id""")
    params = {
        "kind": kind,
        "path": str(path),
        "sha": sha256,
        "dur": round(duration, 3),
        "ins": counts.inserted,
        "upd": counts.updated,
        "same": counts.unchanged,
        "rej": len(prepared.rejects),
        "msg": "; ".join(warnings)[:4000] or None,
    }
    return int(conn.execute(sql, params).scalar_one())


def _cmd_load(args: argparse.Namespace) -> int:
    from etl.db import get_engine

    if args.rejects and not args.skip_invalid:
        raise LoadError("--rejects only makes sense with --skip-invalid")
    try:
        mapping = parse_map(args.map)
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    result = load_file(
        get_engine(),
        args.kind,
        args.path,
        crs=args.crs,
        level=args.level,
        encoding=args.encoding,
        mapping=mapping,
        skip_invalid=args.skip_invalid,
        rejects_path=args.rejects,
        layer=args.layer,
        progress=stderr_progress,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{result.kind}: {result.counts.inserted} inserted, {result.counts.updated} updated, "
        f"{result.counts.unchanged} unchanged, {result.counts.kept} kept, "
        f"{result.rejected} rejected (run {result.run_id})"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load", help="load a file of units, buildings, events, staff, responders, patrols or roads"
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("path", help="GeoJSON, GeoPackage, Shapefile (.shp or .zip), CSV, XLSX or KML")
    p.add_argument("--crs", help="source CRS when the file states none: EPSG code, GCJ02 or BD09")
    p.add_argument("--level", help="level of every unit in the file (units only)")
    p.add_argument(
        "--encoding", help="text encoding (default: detected; UTF-8, UTF-8 BOM, GBK/GB18030)"
    )
    p.add_argument("--map", help="column mapping target=source[,target=source...]")
    p.add_argument("--layer", help="layer name for multi-layer files (GeoPackage)")
    p.add_argument("--skip-invalid", action="store_true", help="load the good rows, reject the bad")
    p.add_argument(
        "--rejects", metavar="OUT.csv", help="with --skip-invalid: where to list the bad rows"
    )
    p.set_defaults(func=_cmd_load)
