"""The read side: every query the pages, API and reports make goes through here.

Every function takes a :class:`Scope`, the jurisdiction of whoever asks. Today the scope is
applied as ``unit_path @> ARRAY[code]`` on every jurisdictional table; when accounts arrive the
same codes become PostgreSQL row-level-security policies (``SET app.unit_codes``), so callers
do not change. All SQL uses bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    """Who is asking and which units they may see. ``unit_codes=()`` means the whole territory."""

    user: str = "system"
    unit_codes: tuple[str, ...] = field(default_factory=tuple)

    def sql(self, alias: str = "") -> str:
        """A WHERE fragment restricting ``alias.unit_path`` to the scope (binds ``:scope_codes``)."""
        if not self.unit_codes:
            return "TRUE"
        col = f"{alias}.unit_path" if alias else "unit_path"
        return f"{col} && CAST(:scope_codes AS varchar[])"

    def params(self) -> dict[str, object]:
        return {"scope_codes": list(self.unit_codes)} if self.unit_codes else {}


WHOLE_TERRITORY = Scope()
