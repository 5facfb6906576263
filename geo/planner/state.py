"""A partition of atoms (blocks, building groups) into districts, with incremental tallies.

GerryChain's idea, trimmed for speed in pure Python: the state is *mutable*. ``flip`` moves one
atom and updates every tally in O(degree); a journal lets a caller roll back flips that a
constraint rejects. Districts are integers ``0..k-1``; labels live outside the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .graph import Edges


@dataclass
class Atoms:
    """Indivisible units of one planning problem, as plain lists for fast scalar access."""

    households: list[float]
    residents: list[float]
    buildings: list[float]
    area: list[float]
    perimeter: list[float]
    x: list[float]
    y: list[float]
    parent: list[int]
    nbrs: list[list[int]]
    lens: list[list[float]]
    eids: list[list[int]]
    edges: list[tuple[int, int]]
    island: list[bool]

    @property
    def n(self) -> int:
        return len(self.households)

    @classmethod
    def build(cls, columns: dict[str, np.ndarray], edges: Edges) -> Atoms:
        """Atoms from equal-length arrays (households, residents, buildings, area, perimeter,
        x, y, optional parent) and position edges."""
        n = len(columns["households"])
        nbrs: list[list[int]] = [[] for _ in range(n)]
        lens: list[list[float]] = [[] for _ in range(n)]
        eids: list[list[int]] = [[] for _ in range(n)]
        pairs = list(zip(edges.u.tolist(), edges.v.tolist(), strict=True))
        for e, ((a, b), w) in enumerate(zip(pairs, edges.length.tolist(), strict=True)):
            for p, q in ((a, b), (b, a)):
                nbrs[p].append(q)
                lens[p].append(w)
                eids[p].append(e)
        parent = columns.get("parent", np.zeros(n, int))
        floats = {c: np.asarray(columns[c], float).tolist() for c in _FLOAT_COLUMNS}
        return cls(
            **floats,
            parent=np.asarray(parent, int).tolist(),
            nbrs=nbrs,
            lens=lens,
            eids=eids,
            edges=pairs,
            island=edges.island.tolist(),
        )


_FLOAT_COLUMNS = ("households", "residents", "buildings", "area", "perimeter", "x", "y")


def polsby_popper(area: float, perimeter: float) -> float:
    """4πA/P², 1 for a disc; 0 for an empty district."""
    return 4 * math.pi * area / (perimeter * perimeter) if perimeter > 0 else 0.0


class State:
    """Assignment of atoms to districts plus per-district tallies kept in step with flips.

    Tallies: households, residents, buildings, area, perimeter (shared edges inside a district
    do not count), member sets, and the set of cut edges (edge ids whose ends differ).
    ``frozen`` districts are never changed by moves or searches.
    """

    def __init__(
        self,
        atoms: Atoms,
        assignment: Sequence[int],
        *,
        n_districts: int | None = None,
        frozen: Iterable[int] = (),
    ) -> None:
        self.atoms = atoms
        self.assign: list[int] = [int(d) for d in assignment]
        k = n_districts if n_districts is not None else max(self.assign, default=-1) + 1
        self.households = [0.0] * k
        self.residents = [0.0] * k
        self.buildings = [0.0] * k
        self.area = [0.0] * k
        self.perimeter = [0.0] * k
        self.members: list[set[int]] = [set() for _ in range(k)]
        self.frozen: set[int] = set(frozen)
        self.journal: list[tuple[int, int]] = []
        self._recount()

    @property
    def k(self) -> int:
        return len(self.households)

    def _recount(self) -> None:
        a = self.atoms
        for node, d in enumerate(self.assign):
            self._add(node, d)
        for e, (p, q) in enumerate(a.edges):
            if self.assign[p] == self.assign[q]:
                self.perimeter[self.assign[p]] -= 2 * a.lens[p][a.eids[p].index(e)]
        self.cut_edges = {e for e, (p, q) in enumerate(a.edges) if self.assign[p] != self.assign[q]}

    def _add(self, node: int, d: int) -> None:
        a = self.atoms
        self.households[d] += a.households[node]
        self.residents[d] += a.residents[node]
        self.buildings[d] += a.buildings[node]
        self.area[d] += a.area[node]
        self.perimeter[d] += a.perimeter[node]
        self.members[d].add(node)

    def new_district(self) -> int:
        """Append an empty district and return its id."""
        for tally in (self.households, self.residents, self.buildings, self.area, self.perimeter):
            tally.append(0.0)
        self.members.append(set())
        return self.k - 1

    def flip(self, node: int, dst: int) -> None:
        """Move ``node`` to district ``dst``, updating every tally incrementally."""
        src = self.assign[node]
        if src == dst:
            return
        self.journal.append((node, src))
        self._move(node, src, dst)

    def _move(self, node: int, src: int, dst: int) -> None:
        a = self.atoms
        shared_src = shared_dst = 0.0
        cut = self.cut_edges
        for u, w, e in zip(a.nbrs[node], a.lens[node], a.eids[node], strict=True):
            du = self.assign[u]
            if du == src:
                shared_src += w
                cut.add(e)
            elif du == dst:
                shared_dst += w
                cut.discard(e)
        h, r, b = a.households[node], a.residents[node], a.buildings[node]
        ar, pe = a.area[node], a.perimeter[node]
        self.households[src] -= h
        self.households[dst] += h
        self.residents[src] -= r
        self.residents[dst] += r
        self.buildings[src] -= b
        self.buildings[dst] += b
        self.area[src] -= ar
        self.area[dst] += ar
        self.perimeter[src] -= pe - 2 * shared_src
        self.perimeter[dst] += pe - 2 * shared_dst
        self.members[src].discard(node)
        self.members[dst].add(node)
        self.assign[node] = dst

    def checkpoint(self) -> int:
        """A mark to ``rollback`` to."""
        return len(self.journal)

    def rollback(self, mark: int = 0) -> None:
        """Undo every flip made after ``mark``."""
        while len(self.journal) > mark:
            node, src = self.journal.pop()
            self._move(node, self.assign[node], src)

    def commit(self) -> None:
        """Forget the journal (flips so far can no longer be rolled back)."""
        self.journal.clear()

    def touched(self, mark: int = 0) -> set[int]:
        """Districts changed by the flips after ``mark`` (sources and current destinations)."""
        out = {src for _, src in self.journal[mark:]}
        return out | {self.assign[node] for node, _ in self.journal[mark:]}

    # --- questions the searches ask -----------------------------------------------------------

    def pp(self, d: int) -> float:
        return polsby_popper(self.area[d], self.perimeter[d])

    def shared_by_district(self, node: int) -> dict[int, float]:
        """Boundary length of ``node`` shared with each district (island links count 0)."""
        out: dict[int, float] = {}
        assign = self.assign
        for u, w in zip(self.atoms.nbrs[node], self.atoms.lens[node], strict=True):
            du = assign[u]
            out[du] = out.get(du, 0.0) + w
        return out

    def is_boundary(self, node: int) -> bool:
        d = self.assign[node]
        return any(self.assign[u] != d for u in self.atoms.nbrs[node])

    def can_remove(self, node: int) -> bool:
        """True when ``node``'s district stays non-empty and connected without it."""
        d = self.assign[node]
        if len(self.members[d]) <= 1:
            return False
        assign, nbrs = self.assign, self.atoms.nbrs
        targets = {u for u in nbrs[node] if assign[u] == d}
        if len(targets) <= 1:
            return True
        # BFS inside the district from one neighbour until every other neighbour is reached.
        start = targets.pop()
        seen = {start, node}
        frontier = [start]
        while frontier and targets:
            nxt = []
            for p in frontier:
                for q in nbrs[p]:
                    if q not in seen and assign[q] == d:
                        seen.add(q)
                        targets.discard(q)
                        nxt.append(q)
            frontier = nxt
        return not targets

    def neighbour_districts(self, d: int) -> set[int]:
        assign, nbrs = self.assign, self.atoms.nbrs
        return {assign[u] for p in self.members[d] for u in nbrs[p]} - {d}

    def district_components(self, d: int) -> list[list[int]]:
        """Connected parts of district ``d``, largest household total first."""
        return components_within(self.atoms, self.members[d], lambda q: self.assign[q] == d)


def components_within(
    atoms: Atoms, nodes: Iterable[int], inside: Callable[[int], bool]
) -> list[list[int]]:
    """Connected parts of ``nodes`` (the predicate ``inside`` says who may be walked through),
    sorted by household total then size, largest first; ties keep the lowest atom first."""
    nbrs, hh = atoms.nbrs, atoms.households
    seen: set[int] = set()
    parts: list[list[int]] = []
    for start in sorted(nodes):
        if start in seen:
            continue
        seen.add(start)
        part, frontier = [start], [start]
        while frontier:
            nxt = []
            for p in frontier:
                for q in nbrs[p]:
                    if q not in seen and inside(q):
                        seen.add(q)
                        part.append(q)
                        nxt.append(q)
            frontier = nxt
        parts.append(sorted(part))
    parts.sort(key=lambda p: (-sum(hh[i] for i in p), -len(p), p[0]))
    return parts
