"""`lte` command line. Each module below adds its commands to `lte.cli.app.app`."""

from lte.cli import (  # noqa: E402,F401  (importing registers the commands)
    ablate,
    basis,
    drift,
    embedding,
    ingest,
    models,
    status,
)
from lte.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
