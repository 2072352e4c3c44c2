"""Several inputs in one ``geosr run``: which files, and where each output goes.

Archives are many scenes, often small ones.  One process for all of them pays
torch's start-up (about 2 s) and the model's first calls once, instead of once
per file; the scenes themselves run one after another, each through the whole
bounded-memory pipeline.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from geosr.api import default_output
from geosr.errors import InputError, OptionError
from geosr.io.remote import is_remote

_GLOB_CHARS = frozenset("*?[")


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """The inputs named by ``patterns``: paths as given, and quoted globs (``'tiles/*.tif'``,
    ``'**'`` for subfolders) expanded in sorted order, for archives too large for a shell.

    A path that exists is never taken as a pattern, nor is a remote path.

    Raises
    ------
    InputError
        A pattern that matches nothing.
    """
    out: list[str] = []
    for pattern in patterns:
        if is_remote(pattern) or not _GLOB_CHARS & set(pattern) or Path(pattern).exists():
            out.append(pattern)
            continue
        # glob.glob, not Path.glob: the pattern may be absolute and have wildcards in any part.
        matches = sorted(glob.glob(pattern, recursive=True))  # noqa: PTH207
        if not matches:
            raise InputError(f"{pattern}: no file matches this pattern; check the folder and the quotes")
        out.extend(matches)
    return out


def batch_outputs(sources: Sequence[str], output: Path | None, scale: int) -> list[Path | None]:
    """Where each of ``sources`` is written: ``output`` itself for one input, else
    ``<output folder>/<stem>_x<scale>.tif`` (or beside each input without ``-o``).

    ``output`` is a folder when it is an existing directory that is not a Zarr
    store (a ``.zarr`` output is a directory too).  With several inputs it must
    be one.

    Raises
    ------
    OptionError
        Several inputs and an ``output`` that is not a folder, or two inputs
        that would write the same output.
    """
    folder = output is not None and output.is_dir() and output.suffix.lower() != ".zarr"
    if len(sources) == 1 and not folder:
        return [output]
    if output is not None and not folder:
        raise OptionError(
            f"{output}: with {len(sources)} inputs, --output must be an existing folder for their "
            "outputs (each is written as <stem>_x<scale>.tif); create it, or leave --output out to "
            "write each output beside its input"
        )
    targets = [
        (output / default_output(src, scale).name) if output is not None else default_output(src, scale)
        for src in sources
    ]
    seen: dict[Path, str] = {}
    for src, target in zip(sources, targets, strict=True):
        if target in seen:
            raise OptionError(
                f"{seen[target]} and {src} would both be written to {target}; give inputs with "
                "different names, or run them into different folders"
            )
        seen[target] = src
    return list(targets)
