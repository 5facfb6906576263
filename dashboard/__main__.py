"""``python -m dashboard``: serve the app with waitress on settings.host:settings.port."""

from __future__ import annotations

import logging

from waitress import serve

from dashboard.app import create_app
from etl.settings import get_settings


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    app = create_app(settings)
    print(f"serving http://{settings.host}:{settings.port}/", flush=True)
    serve(app.server, host=settings.host, port=settings.port, threads=8)


if __name__ == "__main__":
    main()
