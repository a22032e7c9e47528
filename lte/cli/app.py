"""The `lte` Typer application; command modules in this package register on it."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

app = typer.Typer(
    name="lte",
    help="Long-Term Embeddings: ingest events, freeze the basis, build LTEs, train, promote, monitor.",
    no_args_is_help=True,
    add_completion=False,
)


def print_json(obj: Any) -> None:
    """Machine output: one JSON document on stdout (datetimes and numpy values become strings/numbers)."""
    json.dump(obj, sys.stdout, indent=2, default=_default, sort_keys=False)
    sys.stdout.write("\n")


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def settings():
    """Settings from the environment (LTE_HOME etc.), created lazily so `lte --help` stays fast."""
    from lte.config import load_settings

    return load_settings()
