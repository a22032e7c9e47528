"""`lte` command line. Each module below adds its commands to `lte.cli.app.app`."""

from lte.cli.app import app
from lte.cli import status  # noqa: F401,E402  (registers commands)


def main() -> None:
    app()


__all__ = ["app", "main"]
