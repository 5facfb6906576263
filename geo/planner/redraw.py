"""``redraw``: group blocks into grids of a household band, minimally or from scratch."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely

from ._crs import require_crs, to_working, working_crs
from ._solve import Problem, Solution, fmt, solve_full, solve_minimal
from ._table import Table, building_data, split_oversized
from .blocks import buildings_to_blocks
from .codes import reading_order
from .errors import PlannerInputError
from .graph import Edges, edges_from_networkx, link_islands, rook_edges
from .metrics import dissolve, shape_measures
from .state import Atoms


@dataclass(frozen=True)
class Violation:
    """A district left outside the band (or otherwise flawed), and why."""

    district: Hashable
    kind: str  # "under" | "over" | "not_contiguous"
    households: float
    reason: str


@dataclass(frozen=True)
class Plan:
    """Result of ``redraw``: atom → district, one row per district, and what could not be met.

    ``assignment`` is indexed by block id; a block cut into pieces is replaced by its pieces
    (``"B17/1"``, ``"B17/2"``…, listed in ``pieces`` with their block). ``districts`` holds the
    tallies and geometry (in the blocks' CRS). ``building_assignment`` maps building id →
    district when the buildings are known (``building_ids`` column or ``buildings=``).
    """

    assignment: pd.Series
    districts: gpd.GeoDataFrame
    violations: list[Violation]
    metrics: dict[str, Any]
    band: tuple[float, float]
    pieces: gpd.GeoDataFrame | None = None
    building_assignment: pd.Series | None = None

    @property
    def tallies(self) -> pd.DataFrame:
        """Per-district tallies without geometry."""
        return pd.DataFrame(self.districts.drop(columns="geometry"))

    @property
    def kept(self) -> list[Hashable]:
        """Labels carried over from ``current`` (their codes should be kept)."""
        return self.districts.index[self.districts["kept"]].tolist()


def redraw(
    blocks: gpd.GeoDataFrame,
    *,
    households_col: str = "households",
    band: tuple[float, float] = (300, 500),
    current: pd.Series | Mapping[Hashable, Hashable] | str | None = None,
    locked: Collection[Hashable] = (),
    full: bool = False,
    parent_col: str | None = None,
    seed: int | np.random.Generator | None = 0,
    max_steps: int | None = None,
    buildings: gpd.GeoDataFrame | None = None,
    id_col: str | None = None,
    residents_col: str = "residents",
    graph: nx.Graph | None = None,
    crs: Any = None,
    max_rings: int = 3,
) -> Plan:
    """Group ``blocks`` (index = block id) into contiguous districts of ``band`` households.

    - Districts never cross ``parent_col``: each parent is solved on its own.
    - With ``current`` (block → label; a Series, a mapping or a column name) and ``full=False``
      only out-of-band districts and neighbours up to ``max_rings`` rings away move; the rest
      keep their blocks and label. ``locked`` labels never change. ``full=True`` starts over
      (locked ones stay) and gives each new district the current label it mostly overlaps.
    - A block over the ceiling is cut into the fewest groups of its buildings (``buildings``
      with ``id_col``; membership from the blocks' ``building_ids`` column or by
      representative point). An atom still over the ceiling becomes its own district, flagged.
    - A full redraw bisects each connected group into k = households / band midpoint parts
      (the nearest feasible k), repairs the band (single flips, chains of flips, then
      recombination of a violator with a neighbour along a random spanning tree) and raises
      Polsby-Popper by flips that keep every district connected and in band.
    - Districts that stay out of band are listed in ``violations`` with the reason. New
      districts are labelled ``new-1``, ``new-2``… by parent, then in reading order.
      Deterministic for a given ``seed`` (Generator, int or None).

    ``graph`` is an optional ``adjacency(blocks)``; ``crs`` the projected CRS for measures;
    ``max_steps`` caps the moves of each band repair (default 20 per atom + 1000).

    >>> import geopandas as gpd, shapely
    >>> cells = [shapely.box(x, y, x + 1, y + 1) for y in range(4) for x in range(4)]
    >>> blocks = gpd.GeoDataFrame({"households": [100] * 16}, geometry=cells, crs=3857)
    >>> plan = redraw(blocks, band=(300, 500))
    >>> sorted(plan.districts["households"].tolist()), plan.violations
    ([400, 400, 400, 400], [])
    """
    return plan_districts(
        blocks,
        households_col=households_col,
        band=band,
        current=current,
        locked=locked,
        full=full,
        parent_col=parent_col,
        seed=seed,
        max_steps=max_steps,
        buildings=buildings,
        id_col=id_col,
        residents_col=residents_col,
        graph=graph,
        crs=crs,
        max_rings=max_rings,
    )


def plan_districts(
    blocks: gpd.GeoDataFrame,
    *,
    households_col: str,
    band: tuple[float, float],
    current: pd.Series | Mapping[Hashable, Hashable] | str | None,
    locked: Collection[Hashable],
    full: bool,
    parent_col: str | None,
    seed: int | np.random.Generator | None,
    max_steps: int | None,
    buildings: gpd.GeoDataFrame | None,
    id_col: str | None,
    residents_col: str,
    graph: nx.Graph | None,
    crs: Any,
    max_rings: int,
    names: list[str] | None = None,
    nouns: tuple[str, str] = ("blocks", "grid"),
) -> Plan:
    """``redraw`` with the words reasons use: atom ``names`` and (atoms, district) ``nouns``."""
    low, high = _check_band(band)
    _check_blocks(blocks, households_col, parent_col)
    work = working_crs(blocks, crs)
    current_s = _current_series(blocks, current)
    locked_set = _check_locked(locked, current_s)
    table = _table(blocks, households_col, residents_col, parent_col, current_s, work, names)
    edges = (
        edges_from_networkx(graph, blocks.index)
        if graph is not None
        else rook_edges(np.asarray(table.geoms))
    )
    data = building_data(
        buildings,
        id_col=id_col,
        households_col=households_col,
        residents_col=residents_col,
        work=work,
    )
    table = _one_parent_per_label(_with_members(table, blocks, buildings, id_col), locked_set)
    table, edges, split_ids = split_oversized(table, edges, data, high=high, locked=locked_set)
    rng = np.random.default_rng(seed)
    steps = max_steps if max_steps is not None else 20 * len(table) + 1000
    rules = _Rules(
        low, high, locked_set, rng, steps, max_rings, parent_col, full or current is None, nouns
    )
    solved = _solve_parents(table, edges, rules)
    return _assemble(table, solved, rules, blocks.crs, work, split_ids, current is not None)


@dataclass(frozen=True)
class _Rules:
    low: float
    high: float
    locked: set[Hashable]
    rng: np.random.Generator
    max_steps: int
    max_rings: int
    parent_col: str | None
    full: bool
    nouns: tuple[str, str]


def _check_band(band: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(b) for b in band)
    if not (0 <= low <= high and high > 0):
        raise PlannerInputError(f"band must be (low, high) with 0 <= low <= high, got {band}")
    return low, high


def _check_blocks(blocks: gpd.GeoDataFrame, households_col: str, parent_col: str | None) -> None:
    require_crs(blocks, "blocks")
    if blocks.index.has_duplicates:
        raise PlannerInputError(f"block id {blocks.index[blocks.index.duplicated()][0]!r} repeats")
    for col in [households_col] + ([parent_col] if parent_col else []):
        if col not in blocks.columns:
            raise PlannerInputError(f"blocks lack column {col!r}; have {list(blocks.columns)}")
    hh = pd.to_numeric(blocks[households_col], errors="coerce")
    bad = blocks.index[hh.isna() | (hh < 0)]
    if len(bad):
        raise PlannerInputError(
            f"block {bad[0]!r}: {households_col} must be a number >= 0, got "
            f"{blocks.loc[bad[0], households_col]!r}"
        )
    if parent_col and blocks[parent_col].isna().any():
        raise PlannerInputError(
            f"block {blocks.index[blocks[parent_col].isna()][0]!r} has no {parent_col}"
        )


def _current_series(blocks: gpd.GeoDataFrame, current: Any) -> pd.Series | None:
    if current is None:
        return None
    if isinstance(current, str):
        if current not in blocks.columns:
            raise PlannerInputError(f"current names column {current!r}, which blocks lack")
        series = blocks[current]
    else:
        series = pd.Series(current) if not isinstance(current, pd.Series) else current
    series = series.reindex(blocks.index).astype(object)
    return series.where(series.notna(), None)


def _check_locked(locked: Collection[Hashable], current: pd.Series | None) -> set[Hashable]:
    chosen = set(locked)
    if chosen and current is None:
        raise PlannerInputError("locked districts need current labels (current=...)")
    missing = chosen - set(current.dropna()) if current is not None else set()
    if missing:
        raise PlannerInputError(f"locked district(s) {sorted(map(str, missing))} not in current")
    return chosen


def _table(
    blocks: gpd.GeoDataFrame,
    households_col: str,
    residents_col: str,
    parent_col: str | None,
    current: pd.Series | None,
    work: Any,
    names: list[str] | None,
) -> Table:
    n = len(blocks)
    ids = np.asarray(blocks.index, dtype=object)

    def column(name: str) -> np.ndarray:
        return blocks[name].to_numpy(float) if name in blocks.columns else np.zeros(n)

    return Table(
        ids=ids,
        households=blocks[households_col].to_numpy(float),
        residents=column(residents_col),
        buildings=column("n_buildings"),
        parent=np.asarray(blocks[parent_col] if parent_col else [None] * n, dtype=object),
        current=np.asarray(current if current is not None else [None] * n, dtype=object),
        block=ids.copy(),
        members=[None] * n,
        names=names if names is not None else [f"block {i}" for i in ids],
        geoms=np.asarray(to_working(blocks, work).values),
    )


def _with_members(
    table: Table, blocks: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame | None, id_col: str | None
) -> Table:
    """Building ids of each block: its ``building_ids`` column, else by representative point."""
    if "building_ids" in blocks.columns:
        members = [
            tuple(m) if isinstance(m, list | tuple) else None for m in blocks["building_ids"]
        ]
    elif buildings is not None:
        owner = buildings_to_blocks(buildings, blocks, id_col=id_col).dropna()
        grouped = owner.groupby(owner.values).groups
        members = [tuple(grouped[b]) if b in grouped else () for b in blocks.index]
    else:
        return table
    return Table(**{**table.__dict__, "members": members})


def _one_parent_per_label(table: Table, locked: set[Hashable]) -> Table:
    """A current label found in several parents stays only in the parent holding most of its
    households (ties: the first parent in sort order); elsewhere its blocks are unassigned."""
    parent_key = pd.factorize(pd.Series(table.parent, dtype=object), use_na_sentinel=False)[0]
    label = pd.Series(table.current, dtype=object)
    frame = pd.DataFrame({"label": label, "parent": parent_key, "h": table.households})
    frame = frame[label.notna().to_numpy() & ~label.isin(locked).to_numpy()]
    sums = frame.groupby(["label", "parent"], sort=True)["h"].sum().reset_index()
    home = sums.sort_values("h", ascending=False, kind="stable").drop_duplicates("label")
    owner = dict(zip(home["label"], home["parent"], strict=True))
    stray = frame.index[frame["parent"].to_numpy() != frame["label"].map(owner).to_numpy()]
    if len(stray) == 0:
        return table
    current = table.current.copy()
    current[stray.to_numpy()] = None
    return replace(table, current=current)


def _atoms(table: Table, pos: np.ndarray, edges: Edges) -> Atoms:
    geoms = table.geoms[pos]
    points = shapely.point_on_surface(geoms)
    local = np.full(len(table), -1)
    local[pos] = np.arange(len(pos))
    inside = (local[edges.u] >= 0) & (local[edges.v] >= 0)
    sub = edges.take(inside)
    sub = Edges(local[sub.u], local[sub.v], sub.length, sub.island)
    columns = {
        "households": table.households[pos],
        "residents": table.residents[pos],
        "buildings": table.buildings[pos],
        "area": shapely.area(geoms),
        "perimeter": shapely.length(geoms),
        "x": shapely.get_x(points),
        "y": shapely.get_y(points),
    }
    return Atoms.build(columns, link_islands(geoms, sub))


def _solve_parents(table: Table, edges: Edges, rules: _Rules) -> list[tuple[np.ndarray, Solution]]:
    codes, parents = pd.factorize(pd.Series(table.parent, dtype=object), sort=True)
    if len(parents) == 0:
        codes = np.zeros(len(table), int)
        parents = pd.Index([None])
    out = []
    for c, parent in enumerate(parents):
        pos = np.flatnonzero(codes == c)
        where = f"{rules.parent_col} {parent}" if rules.parent_col else "the area"
        problem = Problem(
            atoms=_atoms(table, pos, edges),
            names=[table.names[i] for i in pos.tolist()],
            current=table.current[pos].tolist(),
            locked=rules.locked,
            low=rules.low,
            high=rules.high,
            where=where,
            rng=rules.rng,
            max_steps=rules.max_steps,
            max_rings=rules.max_rings,
            nouns=rules.nouns,
        )
        out.append((pos, solve_full(problem) if rules.full else solve_minimal(problem)))
    return out


# --- assembling the plan --------------------------------------------------------------------


def _assemble(
    table: Table,
    solved: list[tuple[np.ndarray, Solution]],
    rules: _Rules,
    out_crs: Any,
    work: Any,
    split_ids: list[Hashable],
    has_current: bool,
) -> Plan:
    district, labels, notes, locked, parent = _global_ids(table, solved)
    used = np.unique(district)
    frame = _district_frame(table, district, used, work)
    frame["parent"] = [parent[d] for d in used]
    if rules.full and has_current:
        _match_labels(table, district, labels, locked)
    final = _final_labels(frame, used, labels)
    frame.index = pd.Index([final[d] for d in used], name="district")
    frame = _status(frame, rules, used, labels, locked)
    assignment = pd.Series([final[d] for d in district], index=pd.Index(table.ids), name="district")
    violations = _violations(frame, used, notes, final, rules, _lumps(table, district))
    metrics = _metrics(frame, table, assignment, has_current, split_ids, violations)
    if rules.parent_col is None:
        frame = frame.drop(columns="parent")
    districts = gpd.GeoDataFrame(frame, geometry="geometry", crs=work).to_crs(out_crs)
    return Plan(
        assignment=assignment,
        districts=districts,
        violations=violations,
        metrics=metrics,
        band=(rules.low, rules.high),
        pieces=_pieces(table, out_crs, work),
        building_assignment=_buildings(table, assignment),
    )


def _global_ids(
    table: Table, solved: list[tuple[np.ndarray, Solution]]
) -> tuple[np.ndarray, list[Hashable | None], dict[int, str], set[int], list[Hashable]]:
    district = np.full(len(table), -1)
    labels: list[Hashable | None] = []
    notes: dict[int, str] = {}
    locked: set[int] = set()
    parent: list[Hashable] = []
    for pos, sol in solved:
        offset = len(labels)
        district[pos] = np.asarray(sol.assign) + offset
        labels += sol.labels
        notes.update({d + offset: note for d, note in sol.notes.items()})
        locked |= {d + offset for d in sol.locked}
        parent += [table.parent[pos[0]]] * len(sol.labels)
    return district, labels, notes, locked, parent


def _district_frame(
    table: Table, district: np.ndarray, used: np.ndarray, work: Any
) -> pd.DataFrame:
    _, geoms = dissolve(table.geoms, district)
    sums = (
        pd.DataFrame(
            {
                "households": table.households,
                "residents": table.residents,
                "n_buildings": table.buildings,
                "n_blocks": 1,
                "d": district,
            }
        )
        .groupby("d")
        .sum()
        .loc[used]
    )
    # Whole counts stay whole (households estimated from floor area may be fractional).
    sums = sums.apply(lambda c: c.round().astype(int) if np.allclose(c, c.round()) else c)
    frame = pd.concat([sums.reset_index(drop=True), shape_measures(geoms)], axis=1)
    frame["geometry"] = geoms
    return frame


def _match_labels(
    table: Table, district: np.ndarray, labels: list[Hashable | None], locked: set[int]
) -> None:
    """Give each new district the current label holding most of its households (over half),
    each label at most once, largest overlaps first."""
    cur = pd.Series(table.current, dtype=object)
    known = cur.notna().to_numpy()
    if not known.any():
        return
    weight = table.households + 1e-3  # empty blocks still count a little
    overlap = (
        pd.DataFrame({"d": district[known], "label": cur[known].to_numpy(), "w": weight[known]})
        .groupby(["d", "label"], sort=True)["w"]
        .sum()
        .reset_index()
        .sort_values(["w", "d"], ascending=[False, True], kind="stable")
    )
    size = pd.Series(weight).groupby(district).sum()
    taken = {labels[d] for d in locked}
    for d, label, w in overlap.itertuples(index=False):
        if labels[d] is None and label not in taken and w > size[d] / 2:
            labels[d] = label
            taken.add(label)


def _final_labels(
    frame: pd.DataFrame, used: np.ndarray, labels: list[Hashable | None]
) -> dict[int, Hashable]:
    """Labels kept where known; new districts become new-1, new-2… by parent, then reading
    order of their representative points."""
    final: dict[int, Hashable] = {int(d): labels[d] for d in used.tolist() if labels[d] is not None}
    fresh = [i for i, d in enumerate(used.tolist()) if labels[d] is None]
    if not fresh:
        return final
    points = shapely.point_on_surface(frame["geometry"].to_numpy()[fresh])
    tol = float(np.median(np.sqrt(frame["area_m2"].to_numpy()))) / 2
    order = reading_order(shapely.get_x(points), shapely.get_y(points), row_tolerance=tol)
    parents = _sort_codes(frame["parent"].to_numpy()[fresh])
    order = order[np.argsort(parents[order], kind="stable")]
    taken = {str(v) for v in final.values()}
    n = 0
    for i in order.tolist():
        n += 1
        while f"new-{n}" in taken:
            n += 1
        final[int(used[fresh[i]])] = f"new-{n}"
    return final


def _sort_codes(values: np.ndarray) -> np.ndarray:
    """Integer codes that sort like the values (parents may be None, str or int)."""
    keys = [(v is None, str(type(v)), v if v is not None else 0) for v in values.tolist()]
    order = sorted(set(keys))
    return np.array([order.index(k) for k in keys], dtype=int)


def _status(
    frame: pd.DataFrame,
    rules: _Rules,
    used: np.ndarray,
    labels: list[Hashable | None],
    locked: set[int],
) -> pd.DataFrame:
    h = frame["households"]
    frame["status"] = np.where(
        h < rules.low - 1e-9, "under", np.where(h > rules.high + 1e-9, "over", "in")
    )
    frame["deviation"] = h - (rules.low + rules.high) / 2
    frame["kept"] = [labels[d] is not None for d in used.tolist()]
    frame["locked"] = [int(d) in locked for d in used.tolist()]
    return frame


def _violations(
    frame: pd.DataFrame,
    used: np.ndarray,
    notes: dict[int, str],
    final: dict[int, Hashable],
    rules: _Rules,
    lumps: dict[int, list[float]],
) -> list[Violation]:
    out = []
    for d, row in zip(used.tolist(), frame.itertuples(), strict=True):
        if row.status != "in":
            why = notes.get(d) or _why(row, rules, lumps[d])
            out.append(Violation(final[d], row.status, row.households, why))
        if row.locked and shapely.get_num_geometries(row.geometry) > 1:
            out.append(
                Violation(
                    final[d],
                    "not_contiguous",
                    row.households,
                    f"locked {rules.nouns[1]} is in several parts: left unchanged",
                )
            )
    return out


def _lumps(table: Table, district: np.ndarray) -> dict[int, list[float]]:
    """Households of each district's occupied atoms, largest first."""
    out: dict[int, list[float]] = {}
    for d, h in zip(district.tolist(), table.households.tolist(), strict=True):
        if h > 0:
            out.setdefault(d, []).append(h)
    return {d: sorted(v, reverse=True) for d, v in out.items()} | {
        d: [] for d in set(district.tolist()) - set(out)
    }


def _why(row: Any, rules: _Rules, lumps: list[float]) -> str:
    """Generic reason: the district's occupied atoms and what the search tried."""
    side = (
        f"above the {fmt(rules.high)} ceiling"
        if row.status == "over"
        else f"below the {fmt(rules.low)} floor"
    )
    atoms, grid = rules.nouns
    shown = ", ".join(fmt(h) for h in lumps[:4]) + (", …" if len(lumps) > 4 else "")
    noun = atoms if len(lumps) != 1 else atoms.removesuffix("s")
    held = f" in {len(lumps)} occupied {noun} ({shown})" if lumps else ""
    scope = "" if rules.full else f" within {rules.max_rings} rings of neighbouring {grid}s"
    return (
        f"{fmt(row.households)} households{held}, {side}: no move of {atoms} to or from "
        f"neighbouring {grid}s{scope} (single flips, chains of flips, recombining with a "
        f"neighbour) brings it into band without breaking contiguity or pushing another {grid} "
        "further out"
    )


def _metrics(
    frame: pd.DataFrame,
    table: Table,
    assignment: pd.Series,
    has_current: bool,
    split_ids: list[Hashable],
    violations: list[Violation],
) -> dict[str, Any]:
    moved = None
    if has_current:
        cur = pd.Series(table.current, dtype=object)
        same = [c == a for c, a in zip(table.current, assignment.to_numpy(), strict=True)]
        changed = cur.notna().to_numpy() & ~np.array(same, dtype=bool)
        moved = {
            "households_reassigned": float(table.households[changed].sum()),
            "buildings_reassigned": float(table.buildings[changed].sum()),
            "blocks_reassigned": int(changed.sum()),
        }
    return {
        "n_districts": len(frame),
        "n_out_of_band": int((frame["status"] != "in").sum()),
        "households_total": float(frame["households"].sum()),
        "mean_polsby_popper": float(frame["polsby_popper"].mean()),
        "mean_hull_ratio": float(frame["hull_ratio"].mean()),
        "n_split_blocks": len(split_ids),
        "split_blocks": list(split_ids),
        "n_violations": len(violations),
        **(
            moved
            or dict.fromkeys(("households_reassigned", "buildings_reassigned", "blocks_reassigned"))
        ),
    }


def _pieces(table: Table, out_crs: Any, work: Any) -> gpd.GeoDataFrame | None:
    split = np.array([i != b for i, b in zip(table.ids, table.block, strict=True)])
    if not split.any():
        return None
    return gpd.GeoDataFrame(
        {
            "block": table.block[split],
            "households": table.households[split],
            "building_ids": [table.members[i] for i in np.flatnonzero(split).tolist()],
        },
        geometry=table.geoms[split],
        index=pd.Index(table.ids[split], name="piece"),
        crs=work,
    ).to_crs(out_crs)


def _buildings(table: Table, assignment: pd.Series) -> pd.Series | None:
    if all(m is None for m in table.members):
        return None
    pairs = [
        (b, label)
        for members, label in zip(table.members, assignment.to_numpy(), strict=True)
        for b in members or ()
    ]
    return pd.Series(
        [label for _, label in pairs],
        index=pd.Index([b for b, _ in pairs], name="building"),
        name="district",
        dtype=object,
    )
