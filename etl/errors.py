"""Errors the loaders raise. Messages name the file, the row or feature, and the reason."""

from __future__ import annotations


class LoadError(Exception):
    """A load was refused; the database is unchanged."""


class FileFormatError(LoadError):
    """The file cannot be read as any supported format."""


class CRSMissingError(LoadError):
    """The file states no CRS and none was given with --crs."""


class CRSInvalidError(LoadError):
    """The CRS given with --crs is not one we can convert from."""


class ValidationFailed(LoadError):
    """One or more rows failed validation."""

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        head = "; ".join(f"{where}: {why}" for where, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{path}: {len(problems)} invalid row(s): {head}{more}")
