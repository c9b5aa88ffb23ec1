"""`kubelite server` with node access installed into the API server application.

Stands in for the two lines APIServer.start does not have yet (see the report
in server/streaming.py's docstring): `streaming.install(app, ca_file=..., token=...)`.
Run as `python tests/streaming/server_main.py server --data-dir DIR --listen ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubelite.server import app as server_app
from kubelite.server import streaming

_build_app = server_app.build_app


def _data_dir() -> Path:
    return Path(sys.argv[sys.argv.index("--data-dir") + 1])


def build_app(context: server_app.ServerContext) -> server_app.web.Application:
    app = _build_app(context)
    if streaming.NODE_ACCESS not in app:
        data_dir = _data_dir()
        streaming.install(app, ca_file=data_dir / "pki" / "ca.crt",
                          token=(data_dir / "admin.token").read_text().strip())
    return app


if __name__ == "__main__":
    server_app.build_app = build_app  # type: ignore[assignment]
    from kubelite.cli.main import main

    sys.exit(main())
