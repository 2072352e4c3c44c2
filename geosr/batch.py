"""Several inputs in one ``geosr run``: which files, and where each output goes.

Archives are many scenes, often small ones.  One process for all of them pays
torch's start-up (about 2 s) and the model's first calls once, instead of once
per file; the scenes themselves run one after another, each through the whole
bounded-memory pipeline.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

from geosr.errors import InputError, OptionError, counted, warn
from geosr.io.remote import file_url_path, is_remote, is_virtual
from geosr.io.scene import check_input_named

_GLOB_CHARS = frozenset("*?[")


def has_wildcards(pattern: str) -> bool:
    """Whether ``pattern`` holds a glob's wildcards (it is a path as given otherwise)."""
    return bool(_GLOB_CHARS & set(pattern))


def names_apart(paths: Sequence[PurePath]) -> list[str]:
    """Each path's file name, with as many of its folders as tell it from the other paths'
    (``a/B04.tif``, ``b/B04.tif``): the names of a run's inputs and of an evaluation's images."""

    def tail(path: PurePath, depth: int) -> str:
        return "/".join(path.parts[-depth:])

    names = []
    for path in paths:
        others = [p for p in paths if p != path]
        depth = 1
        while depth < len(path.parts) and any(tail(o, depth) == tail(path, depth) for o in others):
            depth += 1
        names.append(tail(path, depth))
    return names


_PRODUCT = re.compile(r"^(?P<stem>.+)_x[0-9]+(?:\.tif|\.zarr|\.stac\.json|\.quicklook\.png)$")
"""The names geosr gives what it writes for an input ``<stem>.*``: the output at any
scale (:func:`geosr.run_outputs.default_output`), its STAC Item and its quicklook."""


def expand_inputs(patterns: Sequence[str], output_folder: Path | None = None) -> list[str]:
    """The inputs named by ``patterns``: paths as given, and quoted globs (``'tiles/*.tif'``,
    ``'**'`` for subfolders) expanded in sorted order, for archives too large for a shell.

    A path that exists is never taken as a pattern, nor is a URL or a GDAL ``/vsi`` path.  A glob's
    matches leave out what geosr wrote for other matches, beside them or in
    ``output_folder`` (the ``-o`` folder of the run).

    Raises
    ------
    InputError
        A pattern that is empty or matches nothing.
    """
    out: list[str] = []
    for pattern in patterns:
        check_input_named(pattern)  # before any input runs: '' is a mistyped command, not a file
        pattern = str(file_url_path(pattern))
        # A URL or /vsi path is GDAL's to read: '?' or '[' in an archive member's name is no glob.
        if is_virtual(pattern) or not has_wildcards(pattern) or Path(pattern).exists():
            out.append(pattern)
            continue
        # glob.glob, not Path.glob: the pattern may be absolute and have wildcards in any part.
        # The quotes that keep the shell off the pattern keep it off a leading ~ too.
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))  # noqa: PTH207, PTH111
        if not matches:
            hint = _brackets_hint(pattern)
            raise InputError(
                f"{pattern}: no file matches this pattern; check the folder and the quotes{hint}"
            )
        out.extend(_without_products(matches, output_folder))
    return _once_each(out)


def _brackets_hint(pattern: str) -> str:
    """How to match a '[' of a name (a folder 'S2 [2020]'): a glob reads '[2020]' as one of the
    characters 2 and 0, so the pattern matched nothing, and the message said no more."""
    if "[" not in pattern:
        return ""
    escaped = pattern.replace("[", "[[]")
    return f"; in a glob, [ ] hold a set of characters: write [[] for a '[' of a name ({escaped})"


def _once_each(paths: list[str]) -> list[str]:
    """``paths`` without the repeats of one file (a glob that also matches a file named
    beside it, or one file spelled two ways), each dropped with one warning line, which names
    the spelling kept: it said "given twice" of each repeat, twice for a file given three times."""
    first: dict[str, str] = {}
    kept = []
    for path in paths:
        key = path if is_remote(path) else str(Path(path).resolve())
        if key in first:
            warn(f"{path}: the same file as {first[key]}, given before; it runs once")
            continue
        first[key] = path
        kept.append(path)
    return kept


def _without_products(matches: list[str], output_folder: Path | None = None) -> list[str]:
    """``matches`` less the files geosr wrote for another of them (``a_x4.tif`` beside
    ``a.tif``, or in ``output_folder``), with one warning line naming them.

    Outputs go beside their inputs by default, so the same glob run again (the
    ``--resume`` of an interrupted batch, or another ``--scale``) matches the
    outputs too, and would super-resolve each output into ``a_x4_x4.tif``; so does
    a recursive glob over the ``-o`` folder (``'archive/**/*.tif' -o archive/out``).
    """
    stems = {Path(m).with_suffix("").as_posix() for m in matches}
    stem_names = {Path(m).with_suffix("").name for m in matches}
    folder = output_folder.resolve() if output_folder is not None else None
    products = []
    for match in matches:
        named = _PRODUCT.match(Path(match).name)
        if named is None:
            continue
        beside = (Path(match).parent / named["stem"]).as_posix() in stems
        if beside or (Path(match).parent.resolve() == folder and named["stem"] in stem_names):
            products.append(match)
    if products:
        names = ", ".join(Path(p).name for p in products[:5]) + (", ..." if len(products) > 5 else "")
        warn(
            f"skipping {counted(len(products), 'file')} that the pattern matches but that geosr wrote for "
            f"other matches ({names}); name them without a pattern to super-resolve them"
        )
    return [m for m in matches if m not in products]


def batch_outputs(
    sources: Sequence[str], output: str | Path | None, scale: int, variable: str | None = None
) -> list[Path | str | None]:
    """Where each of ``sources`` is written: ``output`` itself for one input, else
    ``<output folder>/<stem>_x<scale>.tif`` (or beside each input without ``-o``;
    ``<stem>_<variable>_x<scale>.tif`` for a ``variable``, :func:`~geosr.run_outputs.default_output`).

    ``output`` is a folder when it is an existing directory that is not a Zarr
    store (a ``.zarr`` output is a directory too).  With several inputs it must
    be one.  A remote ``output`` (``s3://...``) stays the string it is: a Path
    would fold its ``//``.

    Raises
    ------
    OptionError
        Several inputs and an ``output`` that is not a folder, or two inputs
        that would write the same output.
    """
    # Here, not at the module's top: geosr.run_outputs imports the raster libraries, and the command
    # line reads its inputs (has_wildcards) before they load, to tell a mistyped path at once.
    from geosr.run_outputs import check_output_given, default_output

    check_output_given(output)
    output = file_url_path(output) if output is not None else None
    # A remote folder ends with '/': there is no directory to test for.
    remote_folder = output is not None and is_remote(output) and str(output).endswith("/")
    if output is not None and is_remote(output) and len(sources) == 1 and not remote_folder:
        return [str(output)]
    if output is not None and not is_remote(output):
        output = Path(output)
    local_folder = isinstance(output, Path) and output.is_dir() and output.suffix.lower() != ".zarr"
    folder = remote_folder or local_folder
    if len(sources) == 1 and not folder:
        return [output]
    if output is not None and not folder:
        raise OptionError(
            f"{output}: with {len(sources)} inputs, --output must be an existing folder for their "
            "outputs (each is written as <stem>_x<scale>.tif; a remote folder ends with /); create it, "
            "or leave --output out to write each output beside its input"
        )
    targets: list[Path | str] = []
    for src in sources:
        own = default_output(src, scale, variable)
        if remote_folder:
            targets.append(f"{output}{own.name}")
        else:
            targets.append(output / own.name if isinstance(output, Path) and local_folder else own)
    inputs = {Path(src).resolve(): src for src in sources if not is_remote(src)}
    seen: dict[Path | str, str] = {}
    for src, target in zip(sources, targets, strict=True):
        # Resolved: 'a/s.tif' and '/data/a/s.jp2' (or a folder reached through a symlink)
        # name one output, which the second run would refuse, or replace with --overwrite.
        key = target if isinstance(target, str) else target.resolve()
        if key in seen:
            raise OptionError(
                f"{seen[key]} and {src} would both be written to {target}; give inputs with "
                "different names, or run them into different folders"
            )
        if key in inputs:
            # `geosr run a.tif a_x2.tif --scale 2 --overwrite`: the second input was replaced by
            # the first one's output before it was read, and its own output made from that.
            raise OptionError(
                f"{src} would be written to {target}, which is another input of this run; run "
                f"{inputs[key]} on its own, or write the outputs into a folder (-o)"
            )
        seen[key] = src
    return list(targets)
