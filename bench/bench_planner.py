"""Grid planner vs PySAL spopt's MaxPHeuristic on seeded lattices of street blocks.

    python bench/bench_planner.py [--sizes 1000,5000,20000] [--spopt-timeout 600] [--quick]

Each size N is a square-ish lattice of N 100 m blocks (EPSG:4545) with 5–80 households each
(seeded). Ours: ``redraw(blocks, band=(300, 500))``, timed end to end (adjacency, search,
dissolved district geometry). spopt: ``MaxPHeuristic`` with a 300-household floor (it has no
ceiling) and the blocks' centroid coordinates as the attributes (its within-region dissimilarity
then rewards compact regions), timed from weights to labels in a subprocess that is killed after
``--spopt-timeout`` seconds. Both are scored by the same function (``compactness``) on the
dissolved regions. Prints readable lines, then one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geo.planner import compactness, redraw  # noqa: E402

BAND = (300, 500)
CELL = 100.0


def lattice(n: int, seed: int) -> gpd.GeoDataFrame:
    """The first n cells of a rows x cols lattice (rows = round(sqrt n)), 5–80 households."""
    rows = max(1, round(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    i = np.arange(n)
    x = 500_000.0 + (i % cols) * CELL
    y = 3_500_000.0 + (i // cols) * CELL
    households = np.random.default_rng(seed).integers(5, 81, n)
    return gpd.GeoDataFrame(
        {"households": households, "x": x + CELL / 2, "y": y + CELL / 2},
        geometry=shapely.box(x, y, x + CELL, y + CELL),
        crs=4545,
    )


def score(blocks: gpd.GeoDataFrame, labels: Any) -> tuple[int, float, int]:
    """(out-of-band regions, mean Polsby-Popper, regions) on the dissolved regions."""
    shapes = compactness(blocks, list(labels))
    hh = blocks["households"].groupby(np.asarray(labels)).sum()
    out = int(((hh < BAND[0]) | (hh > BAND[1])).sum())
    return out, float(shapes["polsby_popper"].mean()), len(shapes)


def run_ours(blocks: gpd.GeoDataFrame, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    plan = redraw(blocks, band=BAND, seed=seed)
    seconds = time.perf_counter() - start
    out, pp, regions = score(blocks, plan.assignment.to_numpy())
    return {"s": seconds, "out": out, "pp": pp, "regions": regions}


def run_spopt(blocks: gpd.GeoDataFrame, n: int, seed: int, timeout: float) -> dict[str, Any]:
    out = run_spopt_frame(blocks, seed, timeout)
    if out["s"] is None:
        return {**out, "regions": None}
    return out


def fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--spopt-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="sizes 1000 only, spopt timeout 200 s")
    parser.add_argument("--no-spopt", action="store_true", help="run ours only")
    parser.add_argument(
        "--no-demo", action="store_true", help="skip the demo county (needs PostGIS)"
    )
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    timeout = 200.0 if args.quick else args.spopt_timeout
    rows = []
    for n in sizes:
        blocks = lattice(n, args.seed)
        ours = run_ours(blocks, args.seed)
        print(
            f"n={n:>6}  ours : {ours['s']:8.2f} s  regions {ours['regions']:>5}  "
            f"out of band {ours['out']:>4}  mean PP {ours['pp']:.3f}",
            flush=True,
        )
        if args.no_spopt:
            theirs = {"s": None, "out": None, "pp": None, "regions": None}
        else:
            theirs = run_spopt(blocks, n, args.seed, timeout)
        status = (
            "" if theirs["s"] is not None or args.no_spopt else f"  (killed after {timeout:.0f} s)"
        )
        print(
            f"n={n:>6}  spopt: {fmt(theirs['s'], '8.2f')} s  regions {fmt(theirs['regions'], '>5')}  "
            f"out of band {fmt(theirs['out'], '>4')}  mean PP {fmt(theirs['pp'], '.3f')}{status}",
            flush=True,
        )
        rows.append(
            {
                "n": n,
                "ours_s": round(ours["s"], 3),
                "ours_out_of_band": ours["out"],
                "ours_pp": round(ours["pp"], 4),
                "spopt_s": None if theirs["s"] is None else round(theirs["s"], 3),
                "spopt_out_of_band": theirs["out"],
                "spopt_pp": None if theirs["pp"] is None else round(theirs["pp"], 4),
            }
        )
    if not args.no_demo:
        rows.append(run_demo(args, timeout))
    for row in rows:
        print(json.dumps(row))


def demo_blocks() -> tuple[Any, gpd.GeoDataFrame, float]:
    """The loaded demo county's street blocks (read from PostGIS, as the planner page does)."""
    from etl.db import get_engine
    from etl.plans import read_area, street_blocks
    from etl.queries import WHOLE_TERRITORY
    from etl.settings import get_settings

    with get_engine().connect() as conn:
        area = read_area(conn, WHOLE_TERRITORY, get_settings().county_code)
    start = time.perf_counter()
    blocks = street_blocks(area)
    return area, blocks, time.perf_counter() - start


def run_demo(args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """The whole demo county, full redraw inside every community, end to end (blocks + solve)."""
    from etl.plans import propose

    area, blocks, blocks_s = demo_blocks()
    start = time.perf_counter()
    proposal = propose(area, band=BAND, full=True, seed=args.seed, blocks=blocks)
    ours_s = blocks_s + time.perf_counter() - start
    grids = proposal.grids
    hh = grids["households"].to_numpy()
    out = int(((hh < BAND[0]) | (hh > BAND[1])).sum())
    pp, regions = float(grids["polsby_popper"].mean()), len(grids)
    print(
        f"demo county: {len(blocks):,} blocks → {regions} grids in {ours_s:.1f} s "
        f"(blocks {blocks_s:.1f} s), out of band {out}, mean PP {pp:.3f}",
        flush=True,
    )
    theirs = {"s": None, "out": None, "pp": None}
    if not args.no_spopt:
        theirs = run_spopt_frame(blocks.to_crs(4545), args.seed, timeout)
        print(
            f"demo county: spopt {fmt(theirs['s'], '.1f')} s, out of band {fmt(theirs['out'], '')}, "
            f"mean PP {fmt(theirs['pp'], '.3f')}",
            flush=True,
        )
    return {
        "n": f"demo:{len(blocks)}",
        "ours_s": round(ours_s, 3),
        "ours_out_of_band": out,
        "ours_pp": round(pp, 4),
        "spopt_s": None if theirs["s"] is None else round(theirs["s"], 3),
        "spopt_out_of_band": theirs["out"],
        "spopt_pp": None if theirs["pp"] is None else round(theirs["pp"], 4),
    }


def _spopt_frame_worker(path: str, seed: int, conn: Any) -> None:
    import warnings

    from libpysal.weights import Rook
    from spopt.region import MaxPHeuristic

    warnings.filterwarnings("ignore")
    blocks = gpd.read_file(path)
    start = time.perf_counter()
    weights = Rook.from_dataframe(blocks, use_index=False, silence_warnings=True)
    model = MaxPHeuristic(blocks, weights, ["x", "y"], "households", BAND[0], top_n=2)
    model.solve()
    conn.send((time.perf_counter() - start, np.asarray(model.labels_).tolist()))
    conn.close()


def run_spopt_frame(blocks: gpd.GeoDataFrame, seed: int, timeout: float) -> dict[str, Any]:
    import tempfile

    frame = gpd.GeoDataFrame(
        {
            "households": blocks["households"].to_numpy(),
            "x": blocks.centroid.x.to_numpy(),
            "y": blocks.centroid.y.to_numpy(),
        },
        geometry=blocks.geometry.to_numpy(),
        crs=blocks.crs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/blocks.gpkg"
        frame.to_file(path)
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_spopt_frame_worker, args=(path, seed, there), daemon=True)
        proc.start()
        there.close()
        result = here.recv() if here.poll(timeout) else None
        if result is None:
            proc.kill()
        proc.join()
    if result is None:
        return {"s": None, "out": None, "pp": None, "regions": None}
    seconds, labels = result
    out, pp, regions = score(frame, labels)
    return {"s": seconds, "out": out, "pp": pp, "regions": regions}


if __name__ == "__main__":
    main()
