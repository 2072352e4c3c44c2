"""Parsers the commands share for their path options."""

from __future__ import annotations

from pathlib import Path

import typer


def given_path(value: str | Path) -> Path:
    """A path option's value, refused when empty, as an unset shell variable gives it
    (``--json "$OUT"``): typer made ``''`` the working folder, so ``--workdir ''`` wrote
    its GeoTIFFs there and ``--json ''`` was told that '.' is a directory.

    An option's default comes through here too, as the ``Path`` it is declared with
    (``geosr compare``'s ``compare.png``), and is taken as it is."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("is empty; give a path or leave the option out")
    return Path(value)
