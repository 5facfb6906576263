"""Roles and what each may do: the one permission table.

Every role is bound to a unit and sees that unit and everything below it, nothing else; that
part is enforced by PostgreSQL (row-level security, migration 0008). This table says which
*kinds* of thing a role may see and do. The web app checks it on every route and callback
(``dashboard.auth``), the README prints it, and the access tests are generated from it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # accounts, tokens, audit log; everything else too
    COMMANDER = "commander"  # command centre: watches, triages, dispatches
    DISPATCHER = "dispatcher"  # event desk: verifies, files, dispatches, closes
    PLANNER = "planner"  # grid planner: proposes, saves and approves plans
    ANALYST = "analyst"  # coverage reports and exports
    GRID_WORKER = "grid_worker"  # reports and handles events in their grid
    WALL = "wall"  # the read-only wall screen: no personal data at all


class Perm(StrEnum):
    SCREEN = "screen"  # the command centre (一屏监测) and its building tiles
    EVENTS_READ = "events.read"  # event lists, case cards, Open311 reads
    EVENTS_REPORT = "events.report"  # report a new event (API, Open311, desk form)
    EVENTS_ACT = "events.act"  # workflow actions on a case
    EVENTS_DISPATCH = "events.dispatch"  # rank and send responders
    EVENTS_IMPORT = "events.import"  # bulk import of event files
    RESPONDERS_READ = "responders.read"  # the responder board with names
    RESPONDERS_TRACK = "responders.track"  # post AVL positions
    KPIS = "kpis"  # KPI API
    PLANS_READ = "plans.read"  # the planner page: analyse, propose
    PLANS_WRITE = "plans.write"  # save and edit named plans
    PLANS_APPROVE = "plans.approve"  # approve a plan: changes the live grids
    REPORTS = "reports"  # coverage reports on screen
    EXPORT = "export"  # spreadsheets, GIS files, PDFs
    PERSONAL = "personal"  # residents' and staff's personal data unmasked (audited)
    ADMIN = "admin"  # users, tokens, the audit log


R = Role
# fmt: off
PERMISSIONS: dict[Perm, frozenset[Role]] = {
    Perm.SCREEN:           frozenset(R),
    Perm.EVENTS_READ:      frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER, R.ANALYST, R.GRID_WORKER}),
    Perm.EVENTS_REPORT:    frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER, R.GRID_WORKER}),
    Perm.EVENTS_ACT:       frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER, R.GRID_WORKER}),
    Perm.EVENTS_DISPATCH:  frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER}),
    Perm.EVENTS_IMPORT:    frozenset({R.ADMIN, R.DISPATCHER}),
    Perm.RESPONDERS_READ:  frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER}),
    Perm.RESPONDERS_TRACK: frozenset({R.ADMIN, R.DISPATCHER}),
    Perm.KPIS:             frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER, R.PLANNER, R.ANALYST}),
    Perm.PLANS_READ:       frozenset({R.ADMIN, R.PLANNER, R.ANALYST}),
    Perm.PLANS_WRITE:      frozenset({R.ADMIN, R.PLANNER}),
    Perm.PLANS_APPROVE:    frozenset({R.ADMIN, R.PLANNER}),
    Perm.REPORTS:          frozenset({R.ADMIN, R.COMMANDER, R.PLANNER, R.ANALYST}),
    Perm.EXPORT:           frozenset({R.ADMIN, R.PLANNER, R.ANALYST}),
    Perm.PERSONAL:         frozenset({R.ADMIN, R.COMMANDER, R.DISPATCHER, R.GRID_WORKER}),
    Perm.ADMIN:            frozenset({R.ADMIN}),
}
# fmt: on


class UnknownRole(ValueError):
    """A role name that is not one of :class:`Role`."""


def role_of(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise UnknownRole(
            f"unknown role {name!r}: one of {', '.join(r.value for r in Role)}"
        ) from None


def allowed(role: str | Role, perm: Perm) -> bool:
    """Whether ``role`` may do ``perm`` (within its unit)."""
    return Role(role) in PERMISSIONS[perm]


def permission_table_markdown() -> str:
    """The table as Markdown (README), roles across, permissions down."""
    head = "| permission | " + " | ".join(r.value for r in Role) + " |"
    rule = "|---|" + "---|" * len(Role)
    rows = [
        f"| `{p.value}` | " + " | ".join("✓" if r in PERMISSIONS[p] else "" for r in Role) + " |"
        for p in Perm
    ]
    return "\n".join([head, rule, *rows])
