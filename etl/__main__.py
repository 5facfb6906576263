"""Command line: ``python -m etl COMMAND --help``."""

from etl.cli import main

raise SystemExit(main())
