"""The ``python -m etl`` command line. Every command has ``--help``; DATABASE_URL is honoured."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from etl.settings import APP_ROLE, get_settings

Handler = Callable[[argparse.Namespace], int]


def _cmd_db(args: argparse.Namespace) -> int:
    from etl import cluster

    settings = get_settings()
    if not settings.managed_cluster:
        print("DATABASE_URL is set: the project-managed cluster is not used")
        return 0
    actions = {"start": cluster.start, "stop": cluster.stop}
    if args.action == "status":
        print("running" if cluster.is_running(settings) else "stopped")
        return 0
    print(actions[args.action](settings))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from etl import migrate

    url = get_settings().sqlalchemy_url
    if args.downgrade:
        migrate.downgrade(url, args.downgrade)
    elif not migrate.upgrade(url, args.revision):
        print(f"warning: role {APP_ROLE} does not exist: create it and run migrate again, or "
              "the dashboard cannot connect as a row-level-security-bound role")  # fmt: skip
    print(f"database at revision {migrate.current(url)}")
    return 0


def _add_db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="start/stop the project-managed PostGIS cluster")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=_cmd_db)


def _add_migrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply Alembic migrations to the configured database")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. -1, base)")
    p.set_defaults(func=_cmd_migrate)


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_db, _add_migrate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m etl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    _register_optional(sub)
    return parser


# feature modules that add subcommands; each exposes ``register(subparsers)``
FEATURE_MODULES = (
    "etl.load", "etl.check", "etl.demo", "etl.report", "etl.redraw", "etl.accounts_cli",
)  # fmt: skip


def _register_optional(sub: argparse._SubParsersAction) -> None:
    import importlib

    for name in FEATURE_MODULES:
        importlib.import_module(name).register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI contract: a clear message and a non-zero exit
        from etl.errors import LoadError

        if isinstance(exc, LoadError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
