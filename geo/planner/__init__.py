"""Grid planner: street blocks → grids of 300–500 households → micro-grids of 30–100.

Built from small parts in the style of GerryChain: a ``State`` (partition of atoms into
districts with incremental tallies), constraints ``State -> bool``, moves
``(State, rng) -> State``, and searches that use them. Pure: no files, no database.
"""

from .analyse import Analysis, analyse
from .blocks import blocks_from_roads, buildings_to_blocks
from .codes import assign_codes, assign_nested_codes, reading_order
from .errors import PlannerCRSError, PlannerError, PlannerInputError
from .graph import adjacency
from .metrics import compactness
from .microgrids import nest_microgrids
from .redraw import Plan, Violation, redraw

__all__ = [
    "Analysis",
    "Plan",
    "PlannerCRSError",
    "PlannerError",
    "PlannerInputError",
    "Violation",
    "adjacency",
    "analyse",
    "assign_codes",
    "assign_nested_codes",
    "blocks_from_roads",
    "buildings_to_blocks",
    "compactness",
    "nest_microgrids",
    "reading_order",
    "redraw",
]
