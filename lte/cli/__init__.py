"""`lte` command line. Each module below adds its commands to `lte.cli.app.app`."""

from lte.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
