"""Exceptions raised by the grid planner; each message names the feature and the reason."""

from __future__ import annotations


class PlannerError(ValueError):
    """Base class for every error the planner raises on bad input."""


class PlannerCRSError(PlannerError):
    """A layer has no CRS, layers disagree, or a measure needs a projected CRS."""


class PlannerInputError(PlannerError):
    """A column, label, band or option is missing or inconsistent."""
