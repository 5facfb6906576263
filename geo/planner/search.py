"""The searches that build and fix a partition on a ``State``.

- ``bisect_nodes``: recursive coordinate bisection into k parts of (nearly) equal households.
- ``repair_fragments``: give every non-main part of a district to a neighbouring district.
- ``repair_band``: greedy flips touching out-of-band districts; the potential
  (total violation, total squared deviation from the midpoint) falls strictly at each flip, so
  it terminates, and pressure can pass through in-band neighbours.
- ``improve_compactness``: flips that raise the sum of Polsby-Popper scores while no district
  leaves the band and every district stays connected.
- ``split_district`` / ``dissolve_district``: change the number of districts locally.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

from .state import Atoms, State, components_within, polsby_popper

EPS = 1e-9


def violation(h: float, low: float, high: float) -> float:
    """Households outside the band (0 inside)."""
    return low - h if h < low else (h - high if h > high else 0.0)


def choose_k(total: float, low: float, high: float) -> int:
    """Number of districts for ``total`` households: nearest to total/midpoint within the
    feasible range; when no count is feasible, the count with the least total violation."""
    if total <= high:
        return 1
    fewest = math.ceil(total / high - EPS)
    most = math.floor(total / low + EPS) if low > 0 else fewest + int(total)
    ideal = math.floor(total / ((low + high) / 2) + 0.5)
    if fewest <= most:
        return min(max(ideal, fewest), most)
    under, over = most, fewest  # most < fewest: `most` districts go over, `fewest` go under
    over_excess = max(total - under * high, 0.0) if under > 0 else math.inf
    under_gap = fewest * low - total
    return under if over_excess <= under_gap else over


def bisect_nodes(atoms: Atoms, nodes: Sequence[int], k: int) -> list[list[int]]:
    """Split ``nodes`` into ``k`` groups by recursive coordinate bisection on households.

    Each cut runs across the longer side of the group's bounding box and leaves k1/k of the
    households (k1 = k // 2) on the west/south side; groups come out west/south first.
    """
    xs, ys = np.asarray(atoms.x), np.asarray(atoms.y)
    weights = np.asarray(atoms.households)
    out: list[list[int]] = []
    stack: list[tuple[np.ndarray, int]] = [(np.asarray(nodes, int), k)]
    while stack:
        idx, parts = stack.pop()
        if parts <= 1 or len(idx) <= 1:
            out.append(idx.tolist())
            continue
        k1 = parts // 2
        x, y = xs[idx], ys[idx]
        order = np.lexsort((y, x)) if np.ptp(x) >= np.ptp(y) else np.lexsort((x, y))
        cut = _cut_position(weights[idx][order], k1 / parts, k1, len(idx) - (parts - k1))
        stack.append((idx[order[cut:]], parts - k1))
        stack.append((idx[order[:cut]], k1))
    return out


def _cut_position(w: np.ndarray, share: float, lowest: int, highest: int) -> int:
    """Prefix length whose total is nearest ``share`` of the whole (uniform when all zero)."""
    if w.sum() <= 0:
        w = np.ones(len(w))
    csum = np.concatenate([[0.0], np.cumsum(w)])
    target = csum[-1] * share
    i = int(np.searchsorted(csum, target))
    i = i - 1 if i > 0 and (i >= len(csum) or target - csum[i - 1] <= csum[i] - target) else i
    return min(max(i, max(lowest, 1)), max(highest, 1))


def repair_fragments(state: State, districts: Iterable[int]) -> None:
    """Make each district connected: every part but the largest goes whole to the neighbouring
    (non-frozen, same-parent) district it shares the longest boundary with, or becomes a new
    district when it has no such neighbour."""
    for d in sorted(districts):
        for part in state.district_components(d)[1:]:
            shared: dict[int, float] = {}
            a = state.atoms
            for p in part:
                for u, w in zip(a.nbrs[p], a.lens[p], strict=True):
                    other = state.assign[u]
                    if other != d and other not in state.frozen and a.parent[u] == a.parent[p]:
                        shared[other] = shared.get(other, 0.0) + w + EPS
            # A part walled in by frozen districts becomes a district of its own.
            dst = max(sorted(shared), key=lambda o: shared[o]) if shared else state.new_district()
            for p in part:
                state.flip(p, dst)


def total_violation(state: State, districts: Iterable[int], low: float, high: float) -> float:
    return sum(violation(state.households[d], low, high) for d in districts if state.members[d])


def repair_band(
    state: State,
    allowed: set[int],
    low: float,
    high: float,
    *,
    max_steps: int,
    rng: np.random.Generator | None = None,
) -> int:
    """Fix out-of-band districts in ``allowed``; returns the moves made.

    Cheapest first: single flips touching a violator, then chains of flips through up to
    three neighbours, then (with ``rng``) recombination of a violator with a neighbour. Each
    accepted move lowers the total violation (or keeps it and lowers the squared deviation).
    """
    steps = 0
    while steps < max_steps:
        active = [
            d
            for d in sorted(allowed)
            if state.members[d] and violation(state.households[d], low, high) > EPS
        ]
        active.sort(key=lambda d: -violation(state.households[d], low, high))
        moved = 0
        for d in active:
            if violation(state.households[d], low, high) > EPS and _band_flip(
                state, d, allowed, low, high
            ):
                moved += 1
        if not moved:
            moved = sum(_eject_chain(state, d, allowed, low, high) for d in active)
        if not moved and rng is not None:
            moved = sum(_recombine_violator(state, d, allowed, low, high, rng) for d in active)
        steps += moved
        if not moved:
            break
    return steps


def _eject_chain(
    state: State,
    d: int,
    allowed: set[int],
    low: float,
    high: float,
    *,
    depth: int = 3,
    width: int = 4,
) -> bool:
    """Pass ``d``'s excess (or deficit) along a chain of up to ``depth`` neighbours: each flip
    may push the next district out of band as long as the chain ends with less total violation
    in the region. Tries the ``width`` best flips per link; rolls back failed chains."""
    if violation(state.households[d], low, high) <= EPS:
        return False
    region = within_rings(state, [d], depth) & allowed
    before = total_violation(state, region, low, high)
    mark = state.checkpoint()
    chained = _chain_step(state, d, allowed, low, high, depth, width, {d})
    if chained and total_violation(state, region, low, high) < before - EPS:
        return True
    state.rollback(mark)
    return False


def _chain_step(
    state: State,
    d: int,
    allowed: set[int],
    low: float,
    high: float,
    depth: int,
    width: int,
    visited: set[int],
) -> bool:
    over = state.households[d] > high
    options = []
    for node, src, dst in _out_of(state, d, allowed) if over else _into(state, d, allowed):
        other = dst if over else src
        if other in visited:
            continue
        w = state.atoms.households[node]
        if w <= 0:
            continue
        left = violation(state.households[d] + (-w if over else w), low, high)
        pushed = violation(state.households[other] + (w if over else -w), low, high)
        options.append((left + pushed, pushed, node, other, dst))
    options.sort()
    tried = 0
    for _, pushed, node, other, dst in options:
        if tried >= width:
            break
        if not state.can_remove(node):
            continue
        tried += 1
        mark = state.checkpoint()
        state.flip(node, dst)
        if violation(state.households[d], low, high) <= EPS and pushed <= EPS:
            return True
        if (
            depth > 1
            and pushed > EPS
            and _chain_step(state, other, allowed, low, high, depth - 1, width, visited | {other})
            and violation(state.households[d], low, high) <= EPS
        ):
            return True
        state.rollback(mark)
    return False


def _band_flip(state: State, d: int, allowed: set[int], low: float, high: float) -> bool:
    """Best single flip into or out of district ``d`` by (violation, squared deviation, PP)."""
    over = state.households[d] > high
    candidates = _out_of(state, d, allowed) if over else _into(state, d, allowed)
    scored = []
    for node, src, dst in candidates:
        score = _score(state, node, src, dst, low, high)
        if score is not None:
            scored.append((score, node, dst))
    scored.sort()
    for _, node, dst in scored:
        if state.can_remove(node):
            state.flip(node, dst)
            return True
    return False


def _out_of(state: State, d: int, allowed: set[int]) -> list[tuple[int, int, int]]:
    assign, nbrs = state.assign, state.atoms.nbrs
    out = []
    for p in sorted(state.members[d]):
        for dst in sorted({assign[q] for q in nbrs[p]} - {d}):
            if dst in allowed and dst not in state.frozen:
                out.append((p, d, dst))
    return out


def _into(state: State, d: int, allowed: set[int]) -> list[tuple[int, int, int]]:
    assign, nbrs = state.assign, state.atoms.nbrs
    outside = {q for p in state.members[d] for q in nbrs[p] if assign[q] != d}
    return [
        (q, assign[q], d)
        for q in sorted(outside)
        if assign[q] in allowed and assign[q] not in state.frozen
    ]


def _score(
    state: State, node: int, src: int, dst: int, low: float, high: float
) -> tuple[float, float, float] | None:
    w = state.atoms.households[node]
    hs, hd = state.households[src], state.households[dst]
    dv = (
        violation(hs - w, low, high)
        + violation(hd + w, low, high)
        - violation(hs, low, high)
        - violation(hd, low, high)
    )
    dsq = 2 * w * (hd - hs + w)  # change of (hs-mid)^2 + (hd-mid)^2; mid cancels out
    if dv < -EPS or (abs(dv) <= EPS and dsq < -EPS):
        return (round(dv, 9), round(dsq, 6), -pp_gain(state, node, dst))
    return None


def pp_gain(state: State, node: int, dst: int, shared: dict[int, float] | None = None) -> float:
    """Change of PP(src) + PP(dst) if ``node`` moved to ``dst``."""
    a = state.atoms
    src = state.assign[node]
    shared = shared if shared is not None else state.shared_by_district(node)
    ar, pe = a.area[node], a.perimeter[node]
    new_src = polsby_popper(
        state.area[src] - ar, state.perimeter[src] - pe + 2 * shared.get(src, 0)
    )
    new_dst = polsby_popper(
        state.area[dst] + ar, state.perimeter[dst] + pe - 2 * shared.get(dst, 0)
    )
    return new_src + new_dst - state.pp(src) - state.pp(dst)


def improve_compactness(
    state: State,
    allowed: set[int],
    low: float,
    high: float,
    rng: np.random.Generator,
    *,
    max_sweeps: int = 8,
    min_gain: float = 1e-4,
) -> int:
    """Sweeps of PP-raising flips between districts in ``allowed``; returns flips made.

    A flip must not add households outside the band and must keep its source connected.
    """
    flips = 0
    edges, assign = state.atoms.edges, state.assign
    for _ in range(max_sweeps):
        nodes = sorted({p for e in state.cut_edges for p in edges[e] if assign[p] in allowed})
        made = 0
        for i in rng.permutation(len(nodes)).tolist():
            node = nodes[i]
            dst = _best_compact_dst(state, node, allowed, low, high, min_gain)
            if dst is not None and state.can_remove(node):
                state.flip(node, dst)
                made += 1
        flips += made
        if made == 0:
            break
    return flips


def _best_compact_dst(
    state: State, node: int, allowed: set[int], low: float, high: float, min_gain: float
) -> int | None:
    src = state.assign[node]
    if src not in allowed or src in state.frozen or len(state.members[src]) <= 1:
        return None
    shared = state.shared_by_district(node)
    w = state.atoms.households[node]
    hs = state.households[src]
    best, best_gain = None, min_gain
    for dst in sorted(shared):
        if dst == src or dst not in allowed or dst in state.frozen:
            continue
        hd = state.households[dst]
        dv = (
            violation(hs - w, low, high)
            + violation(hd + w, low, high)
            - violation(hs, low, high)
            - violation(hd, low, high)
        )
        if dv > EPS:
            continue
        gain = pp_gain(state, node, dst, shared)
        if gain > best_gain:
            best, best_gain = dst, gain
    return best


def split_district(state: State, d: int, k: int) -> list[int]:
    """Cut district ``d`` into ``k`` connected parts by bisection; ``d`` keeps the part with
    the most households. Returns the ids of all parts (``d`` first)."""
    groups = bisect_nodes(state.atoms, sorted(state.members[d]), k)
    groups.sort(key=lambda g: -sum(state.atoms.households[p] for p in g))
    parts = [d]
    for group in groups[1:]:
        new = state.new_district()
        parts.append(new)
        for p in group:
            state.flip(p, new)
    repair_fragments(state, parts)
    return parts


def dissolve_district(state: State, d: int, allowed: set[int], high: float) -> bool:
    """Hand every atom of ``d`` to neighbouring districts in ``allowed`` without pushing any
    over ``high``; each boundary atom goes to its lightest neighbour. Rolls back on failure."""
    mark = state.checkpoint()
    while state.members[d]:
        moved = False
        for p in sorted(state.members[d]):
            options = [
                o
                for o in state.shared_by_district(p)
                if o != d
                and o in allowed
                and o not in state.frozen
                and state.households[o] + state.atoms.households[p] <= high + EPS
            ]
            if options:
                state.flip(p, min(sorted(options), key=lambda o: state.households[o]))
                moved = True
        if not moved:
            state.rollback(mark)
            return False
    return True


def within_rings(state: State, seeds: Iterable[int], rings: int) -> set[int]:
    """Districts at most ``rings`` steps from ``seeds`` in the district adjacency graph."""
    reached = set(seeds)
    frontier = set(reached)
    for _ in range(rings):
        frontier = {o for d in frontier for o in state.neighbour_districts(d)} - reached
        reached |= frontier
    return reached


def group_components(atoms: Atoms, nodes: Iterable[int]) -> list[list[int]]:
    """Connected parts of an arbitrary node set (walking only through the set)."""
    inside = set(nodes)
    return components_within(atoms, inside, inside.__contains__)


def _recombine_violator(
    state: State, d: int, allowed: set[int], low: float, high: float, rng: np.random.Generator
) -> bool:
    """Recombine ``d`` with the first neighbour for which that lowers the pair's violation."""
    if violation(state.households[d], low, high) <= EPS:
        return False
    for other in sorted(state.neighbour_districts(d)):
        if (
            other in allowed
            and other not in state.frozen
            and recombine(state, d, other, low, high, rng)
        ):
            return True
    return False


def recombine(
    state: State,
    a: int,
    b: int,
    low: float,
    high: float,
    rng: np.random.Generator,
    *,
    trees: int = 6,
) -> bool:
    """ReCom: merge districts ``a`` and ``b``, draw random spanning trees of the merged atoms
    and cut the tree edge that leaves the least total violation (ties: the rounder pair).
    Applies the cut only when it lowers the pair's violation; the side holding more of
    ``a``'s atoms keeps the id ``a``. Both sides are connected by construction."""
    nodes = np.array(sorted(state.members[a] | state.members[b]))
    if len(nodes) < 2:
        return False
    hh = np.array([state.atoms.households[i] for i in nodes])
    total = float(hh.sum())
    now = violation(state.households[a], low, high) + violation(state.households[b], low, high)
    local = {int(n): i for i, n in enumerate(nodes)}
    rows, cols = _local_edges(state, nodes, local)
    best: tuple[float, float, np.ndarray] | None = None
    for _ in range(trees):
        for score, side in _tree_cuts(len(nodes), rows, cols, hh, total, low, high, rng):
            if score < now - EPS:
                key = (score, -_pair_roundness(state, nodes, local, side))
                if best is None or key < best[:2]:
                    best = (key[0], key[1], side)
    if best is None:
        return False
    side = best[2]
    in_a = np.array([state.assign[int(n)] == a for n in nodes])
    keep_a = side if (side & in_a).sum() >= (~side & in_a).sum() else ~side
    for n, to_a in zip(nodes.tolist(), keep_a.tolist(), strict=True):
        state.flip(n, a if to_a else b)
    return True


def _local_edges(
    state: State, nodes: np.ndarray, local: dict[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for n in nodes.tolist():
        for u in state.atoms.nbrs[n]:
            j = local.get(u)
            if j is not None and local[n] < j:
                rows.append(local[n])
                cols.append(j)
    return np.array(rows, int), np.array(cols, int)


def _tree_cuts(
    n: int,
    rows: np.ndarray,
    cols: np.ndarray,
    hh: np.ndarray,
    total: float,
    low: float,
    high: float,
    rng: np.random.Generator,
    keep: int = 3,
) -> list[tuple[float, np.ndarray]]:
    """The ``keep`` best cuts of one random spanning tree: (violation, mask of one side)."""
    weights = rng.random(len(rows)) + 1e-9  # > 0: zero weights vanish from a sparse matrix
    tree = minimum_spanning_tree(coo_matrix((weights, (rows, cols)), shape=(n, n)).tocsr())
    order, pred = breadth_first_order(tree, 0, directed=False, return_predecessors=True)
    if len(order) < n:
        return []  # the pair is not connected (should not happen)
    sub = hh.copy()
    for node in order[:0:-1].tolist():
        sub[pred[node]] += sub[node]
    children = order[1:]
    s = sub[children]
    score = np.array([violation(x, low, high) + violation(total - x, low, high) for x in s])
    out = []
    for i in np.argsort(score, kind="stable")[:keep].tolist():
        out.append((float(score[i]), _subtree_mask(children[i], order, pred, n)))
    return out


def _subtree_mask(root: int, order: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[root] = True
    for node in order.tolist():  # BFS order: parents come before children
        if node != root and pred[node] >= 0 and mask[pred[node]]:
            mask[node] = True
    return mask


def _pair_roundness(
    state: State, nodes: np.ndarray, local: dict[int, int], side: np.ndarray
) -> float:
    """PP(side) + PP(rest) from atom areas, perimeters and shared lengths."""
    a = state.atoms
    area = [0.0, 0.0]
    perim = [0.0, 0.0]
    for n, s in zip(nodes.tolist(), side.tolist(), strict=True):
        area[s] += a.area[n]
        perim[s] += a.perimeter[n]
        for u, w in zip(a.nbrs[n], a.lens[n], strict=True):
            j = local.get(u)
            if j is not None and side[j] == s:
                perim[s] -= w  # each shared edge is seen from both ends: -w twice = -2w
    return polsby_popper(area[0], perim[0]) + polsby_popper(area[1], perim[1])
