"""Parsers the commands share for their path options."""

from __future__ import annotations

from pathlib import Path

import typer


def given_path(value: str) -> Path:
    """A path option's value, refused when empty, as an unset shell variable gives it
    (``--json "$OUT"``): typer made ``''`` the working folder, so ``--workdir ''`` wrote
    its GeoTIFFs there and ``--json ''`` was told that '.' is a directory."""
    if not value.strip():
        raise typer.BadParameter("is empty; give a path or leave the option out")
    return Path(value)
