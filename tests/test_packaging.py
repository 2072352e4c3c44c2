"""What a wheel or an sdist of geosr holds: users ``pip install geosr``, not this checkout."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

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


def test_the_extension_schemas_the_stac_item_is_validated_against_ship() -> None:
    """``--stac`` validates the Item offline against the projection and raster v2 schemas in
    geosr/schemas: one not in the wheel, pystac would try to download it, and fail offline."""
    from geosr.stac import SCHEMAS

    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["geosr"]
    shipped = {path for pattern in patterns for path in (REPO / "geosr").glob(pattern) if path.is_file()}
    assert "https://stac-extensions.github.io/raster/v2.0.0/schema.json" in SCHEMAS
    for name in SCHEMAS.values():
        assert REPO / "geosr" / "schemas" / name in shipped, name


def test_the_sdist_holds_the_tests_and_what_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sdist held tests/test_*.py alone (setuptools' default): without conftest.py, tests/__init__.py
    and malformed.py, which they import, nor examples/, pipelines/ and benchmarks/, which they
    run and read, so no test ran from it ("No module named 'tests.conftest'")."""
    from setuptools.command.egg_info import FileList  # what setuptools' sdist reads MANIFEST.in with

    monkeypatch.chdir(REPO)  # FileList's patterns are relative to the project's root
    read = {  # what the tests import, run and read (and any bytecode beside it, to be left out)
        path.relative_to(REPO).as_posix()
        for folder in ("tests", "examples", "pipelines", "benchmarks", "docs")
        for path in (REPO / folder).rglob("*")
        if path.is_file()
    }
    sdist = FileList()
    sdist.set_allfiles(sorted(read | {"Makefile"}))
    manifest = REPO / "MANIFEST.in"
    for line in manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []:
        if line.strip() and not line.lstrip().startswith("#"):
            sdist.process_template_line(line)
    needed = {name for name in read if "__pycache__" not in name} | {"Makefile"}
    assert needed - set(sdist.files) == set()
    assert [name for name in sdist.files if name.endswith(".pyc")] == []


def test_the_recipes_ship_in_the_wheel_and_a_bundled_one_is_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel had no pipelines/: `geosr train --recipe pipelines/cnnrnn_fast_x4.toml`, as the README
    and the bundled models' cards give it, was "does not exist; recipes live in pipelines/*.toml"
    after `pip install geosr`, with no way to reach the recipes the bundled weights came from."""
    from geosr.train.config import load_config

    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["geosr"]
    shipped = {path.name for pattern in patterns for path in (REPO / "geosr").glob(pattern)}
    recipes = {path.name for path in (REPO / "pipelines").glob("*.toml")}
    assert recipes and recipes <= shipped
    monkeypatch.chdir(tmp_path)  # no pipelines/ folder here, as for a pip install
    for name in ("cnnrnn_fast_x4", "cnnrnn_best_x4"):
        # as text: a recipe's nodata = nan is not equal to itself
        assert repr(load_config(name)) == repr(load_config(REPO / "pipelines" / f"{name}.toml"))


def test_a_recipe_that_is_neither_a_file_nor_a_bundled_name_lists_the_bundled_ones() -> None:
    from geosr.errors import OptionError
    from geosr.train.config import load_config

    with pytest.raises(
        OptionError, match="does not exist; give a TOML file or a bundled recipe's name: "
    ) as info:
        load_config("cnnrnn_fast_x3")
    assert "cnnrnn_fast_x2, cnnrnn_fast_x4" in str(info.value)


def test_the_license_text_ships_and_the_build_backend_reads_the_license_string() -> None:
    """pyproject declared Apache-2.0, but no license text was in the wheel nor the sdist (the license
    asks that recipients get a copy), and it asked for setuptools >= 69, which refuses the SPDX
    string form of ``license`` that setuptools 77 brought (PEP 639)."""
    from packaging.requirements import Requirement

    pyproject = _pyproject()
    texts = [path for pattern in pyproject["project"].get("license-files", []) for path in REPO.glob(pattern)]
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert texts, "no license-files in pyproject, or none there"
    assert re.match(r"\s*Apache License\s+Version 2\.0,", texts[0].read_text(encoding="utf-8"))
    needs = [Requirement(text) for text in pyproject["build-system"]["requires"]]
    backend = next(need for need in needs if need.name == "setuptools")
    assert not backend.specifier.contains("76.9"), backend
    assert backend.specifier.contains("77.0.0"), backend


def test_the_readme_tells_a_pip_user_how_to_install_and_what_comes_with_it() -> None:
    """The README began with `make demo` and `make test`, which need the repository: nothing said
    how to install geosr with pip, what the wheel holds, nor what stands for `make demo` then."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "`pip install geosr`" in text
    assert "`python -m geosr.demo`" in text and 'if __name__ == "__main__":' in (
        REPO / "geosr" / "demo.py"
    ).read_text(encoding="utf-8")


def _imported_modules(path: Path) -> set[str]:
    """The top-level modules ``path`` imports, leaving out those under a ``try`` that catches
    ImportError (optional: geosr runs without them)."""
    tree = ast.parse(path.read_text())
    optional = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.Try)
        and any(
            isinstance(h.type, ast.Name) and h.type.id.endswith(("ImportError", "NotFoundError"))
            for h in block.handlers
        )
        for statement in block.body
        for node in ast.walk(statement)
    }
    modules = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            modules |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.partition(".")[0])
    return modules


def test_every_library_geosr_imports_is_a_declared_dependency() -> None:
    """geosr imported affine, pyproj, numcodecs, fsspec and distributed itself while declaring
    none of them: they came in through rasterio, odc-geo, zarr and dask's extra, and a release of
    one of those dropping or bounding it differently would break geosr, not its own install."""

    def name(requirement: str) -> str:
        return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    project = _pyproject()["project"]
    declared = {name(r) for r in project["dependencies"]}
    declared |= {name(r) for extra in project["optional-dependencies"].values() for r in extra}
    distributions = importlib.metadata.packages_distributions()
    imported = set().union(*(_imported_modules(p) for p in (REPO / "geosr").rglob("*.py")))
    undeclared = {
        module
        for module in imported - set(sys.stdlib_module_names) - {"geosr"}
        # A module not installed here (an extra's) is named as its distribution.
        if not declared & {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {sorted(undeclared)}"
