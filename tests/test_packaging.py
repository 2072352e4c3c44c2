"""What a wheel or an sdist of geosr holds: users ``pip install geosr``, not this checkout."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def _pyproject() -> dict:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_every_package_data_pattern_ships_a_file_and_the_package_is_typed() -> None:
    """pyproject listed ``py.typed`` while the file did not exist, so the wheel had no marker and
    mypy skipped geosr in users' code ("missing library stubs or py.typed marker")."""
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["geosr"]
    shipped = {path for pattern in patterns for path in (REPO / "geosr").glob(pattern) if path.is_file()}
    assert REPO / "geosr" / "py.typed" in shipped
    for pattern in patterns:
        assert any((REPO / "geosr").glob(pattern)), f"package-data {pattern!r} matches no file"
