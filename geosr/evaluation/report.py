"""Reports of an :class:`~geosr.evaluation.wald.EvalReport`: terminal table, JSON, PNG bar chart."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from geosr.batch import names_apart
from geosr.cli_types import StdoutConsole, unpadded
from geosr.errors import OptionError, OutputError
from geosr.evaluation.wald import EvalReport
from geosr.io.atomic import already_exists, write_small_file
from geosr.io.names import as_shown, printable
from geosr.io.remote import home_expanded

PLOT_LABEL = 24
"""Characters of an image's name in a tick label of the plot."""


def _fmt(value: float, digits: int = 2) -> str:
    """A metric for the table: its sign kept for infinities, "n/a" where it is undefined."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def image_names(report: EvalReport) -> list[str]:
    """Each image's name for the table, notes and plot: its file name, with as many of its
    folders as tell it from the other images' (``a/B04.tif``, ``b/B04.tif``).

    The file name alone made the rows of ``val/*/B04.tif`` (one folder per patch) look
    like the bands of one image.  A pair is named by its LR file, and by its HR file too
    where one LR file is paired with several HR files (its rows read alike).
    """
    if report.mode != "paired":
        return _by_characters(names_apart([Path(im.path) for im in report.images]))
    # The pair's own paths: a folder named "run vs ref" split the path there ("run").
    lrs, hrs = zip(*(im.pair or im.path.split(" vs ", 1) for im in report.images), strict=True)
    names = names_apart([Path(p) for p in lrs])
    hr_names = names_apart([Path(p) for p in hrs])
    return _by_characters(
        [f"{n} vs {h}" if lrs.count(lr) > 1 else n for n, h, lr in zip(names, hr_names, lrs, strict=True)]
    )


def _by_characters(names: list[str]) -> list[str]:
    """``names`` by their characters (:func:`~geosr.io.names.as_shown`): in an ASCII locale
    Python holds 'scène.tif' with surrogates, which matplotlib cannot draw (--plot was a
    TypeError traceback from its font)."""
    return [as_shown(name) for name in names]


def table(report: EvalReport, encoding: str = "utf-8", names: Sequence[str] | None = None) -> Table:
    """A rich table: one row per image and band, then the mean, its names as a terminal of
    ``encoding`` prints them (:func:`~geosr.io.names.printable`), or ``names`` in their place."""
    # Names and a weights path escaped: rich reads cells as markup ('hr [a].tif' showed as 'hr .tif').
    t = Table(
        title=escape(
            f"geosr evaluate ({report.mode}, x{report.scale}, model {report.model}, border {report.border})"
        )
    )
    # Folded, not cut: in 80 columns (a pipe, a log file) the ellipsis left
    # m_4709963_se_14_1_20090818.tif and ..._20100629.tif both "m_47099…".
    t.add_column("image", justify="left", overflow="fold")
    # The figures' columns never wrap, their headings over two lines where they are two words:
    # rich narrowed every column to share 80 columns, the image's with the rest, and a name as
    # short as 'small.tif' came out as 'small.ti' over 'f'; now the image takes what they leave.
    for col in ("band", "PSNR", "SSIM", "bicubic\nPSNR", "bicubic\nSSIM", "gain\ndB", "LR err\n%"):
        t.add_column(col, justify="right", no_wrap=True)
    if names is None:
        names = [printable(name, encoding) for name in image_names(report)]
    for im, name in zip(report.images, names, strict=True):
        for k, b in enumerate(im.bands):
            t.add_row(
                # Once per image: a folded name repeated on each of 13 band rows filled screens.
                escape(name) if k == 0 else "",
                str(b.band),
                _fmt(b.psnr),
                _fmt(b.ssim, 4),
                _fmt(b.psnr_bicubic),
                _fmt(b.ssim_bicubic, 4),
                _fmt(b.gain_db),
                _fmt(100 * b.lr_consistency, 3),
            )
    s = report.summary()
    if s:
        t.add_section()
        t.add_row(
            "mean",
            "",
            _fmt(s["psnr"]),
            _fmt(s["ssim"], 4),
            _fmt(s["psnr_bicubic"]),
            _fmt(s["ssim_bicubic"], 4),
            _fmt(s["gain_db"]),
            _fmt(100 * s["lr_consistency"], 3),
        )
    return t


def print_report(report: EvalReport, console: Console | None = None) -> None:
    """The table, each image band's note and the summary line, on ``console`` (stdout by default)."""
    console = console or StdoutConsole()
    # Less the spaces rich pads the centred title with (:func:`~geosr.cli_types.unpadded`).
    # Names escaped for an ASCII terminal before rich measures them: the stream's own escaping
    # came after, and an 'è' was a UnicodeEncodeError traceback on stdout.
    names = [printable(name, console.encoding) for name in image_names(report)]
    # Piped (a log, grep, a script), each row whole on one line with its image's name, as geosr
    # info prints its values: numbered, a row named '1' left its name to a line under the table.
    shown = Text.from_ansi(unpadded(console, table(report, names=names), whole_when_piped=True))
    numbered = not _whole(shown.plain, names)
    if numbered:
        # The image column had 8 characters in an 80-column terminal: a name was folded over 6
        # lines of its row, and cut, two NAIP dates read alike ("m_47099…").  Numbers fit; the
        # names follow the table, whole, one line each.
        numbers = [str(i) for i in range(1, len(names) + 1)]
        shown = Text.from_ansi(unpadded(console, table(report, names=numbers)))
    console.print(shown, soft_wrap=True)
    if numbered:
        for number, name in enumerate(names, 1):
            console.print(f"image {number}: {name}", highlight=False, markup=False, soft_wrap=True)
    for im, name in zip(report.images, image_names(report), strict=True):
        for b in im.bands:
            note = report.band_note(b)
            if note:
                # One line each, however long (rich wrapped them at 80 columns in a pipe, a
                # long image name across two lines).
                line = printable(f"note: {name} band {b.band}: {note}", console.encoding)
                console.print(line, highlight=False, markup=False, soft_wrap=True)
    s = report.summary()
    if s:
        console.print(_summary_line(s), highlight=False, soft_wrap=True)


def _whole(rendered: str, names: Sequence[str]) -> bool:
    """Whether each of ``names`` is whole on a line of the ``rendered`` table: not folded over
    several lines of its row by a column too narrow for it."""
    lines = rendered.splitlines()
    return all(any(name in line for line in lines) for name in names)


def _summary_line(s: dict[str, Any]) -> str:
    """The last line of the report; it says over which bands the means are, as the table's mean row."""
    total, excluded = s["image_bands"], s["excluded_image_bands"]
    if excluded == total:
        return "no image band could be scored (see the notes above): no mean gain over bicubic"
    line = f"mean gain over bicubic {s['gain_db']:+.2f} dB, worst {s['min_gain_db']:+.2f} dB"
    if excluded:
        line += f" (over {total - excluded} of {total} image bands; see the notes above)"
    return line


def plot_formats() -> list[str]:
    """The file extensions (without the dot) that ``--plot`` can write: matplotlib's Agg canvas's."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError as exc:
        raise OptionError("--plot needs matplotlib: pip install matplotlib") from exc
    return sorted(FigureCanvasAgg.get_supported_filetypes())


def _check_plot_format(plot: Path) -> None:
    # matplotlib picks the format from the extension only when it saves, after the
    # whole evaluation; without one it would even write another file (plot.png).
    formats = plot_formats()
    fmt = plot.suffix[1:].lower()
    if str(plot) == "-":
        # As --json - prints the JSON: 'no extension names its image format' did not say that
        # the plot goes to a file alone.
        raise OptionError(
            "--plot -: the plot is written to a file, not to standard output (--json - prints the JSON); "
            "give a path such as gain.png"
        )
    if fmt not in formats:
        what = f"matplotlib cannot write .{fmt} images" if fmt else "no extension names its image format"
        raise OptionError(
            f"--plot {plot}: {what}; end the path with one of " + ", ".join(f".{f}" for f in formats)
        )


def _check_no_folder_named(option: str, text: str) -> None:
    """Refuse a report path ending in '/', which names a folder where the report is a file: as a
    Path the slash is dropped, so ``--json m.json/`` wrote the file m.json (replaced it with
    --overwrite), as ``geosr run -o`` and ``geosr compare -o`` did before they said so."""
    if text.endswith("/") and not Path(text).is_dir():  # a folder is told so below
        raise OutputError(
            f"{option} {text}: the '/' at its end names a folder, and the report is a file; "
            f"drop the '/' to write the file {Path(text)}, or give another path"
        )


def check_report_paths(
    json_path: str | Path | None,
    plot: str | Path | None,
    *,
    overwrite: bool,
    inputs: Sequence[Path] = (),
) -> None:
    """Fail fast, before the evaluation (which can take long), on report paths that cannot work.

    Parameters
    ----------
    json_path, plot : str, Path or None
        The ``--json`` and ``--plot`` destinations (text keeps a '/' at the end, which names a folder).
    overwrite : bool
        Whether existing report files may be replaced.
    inputs : sequence of Path
        The rasters evaluated: a report never replaces one, even with ``overwrite``.

    Raises
    ------
    OptionError
        The plot's extension is not a format matplotlib writes (or the plot is ``-``, or
        matplotlib is not installed), a name is too long to exist, or both reports name the
        same file (the plot would silently replace the JSON).
    OutputError
        A destination is a directory or names one (a '/' at its end), an input, exists
        without ``overwrite``, or its directory is missing or not writable.
    """
    from geosr.io.atomic import check_writable, refuse_overlong_name

    for option, given in (("--json", json_path), ("--plot", plot)):
        if given is not None:
            _check_no_folder_named(option, str(given))
    json_path = None if json_path is None else Path(json_path)
    plot = None if plot is None else Path(plot)
    if plot is not None:
        _check_plot_format(plot)
    if json_path is not None and plot is not None and json_path.resolve() == plot.resolve():
        raise OptionError(
            f"--json and --plot both name {json_path}: the plot would replace the JSON; "
            "give two different paths"
        )
    sources = {Path(i).resolve() for i in inputs}
    for option, path in (("--json", json_path), ("--plot", plot)):
        if path is None:
            continue
        refuse_overlong_name(option, str(path))
        if path.is_dir():
            # --overwrite replaces report files, never a folder (check_writable lets an
            # empty one or a Zarr store through: those are outputs of `geosr run`).
            raise OutputError(f"{option} {path} is a directory; give the path of a file")
        if path.resolve() in sources:
            raise OutputError(f"{option} {path} is an input of this evaluation; give another path")
        if (path.exists() or path.is_symlink()) and not overwrite:
            # check_writable's line named the file by its absolute path, and not the option:
            # '/home/me/work/metrics.json already exists' for `--json metrics.json`.
            raise already_exists(f"{option} {path}")
        check_writable(path.absolute(), overwrite)


def report_json(report: EvalReport) -> str:
    """The report as JSON text."""
    # allow_nan=False: to_dict has made every metric finite or None, and a stray
    # Infinity token would make the file unreadable to strict JSON parsers.
    return json.dumps(report.to_dict(), indent=2, allow_nan=False)


def write_json(report: EvalReport, path: str | Path) -> Path:
    """The report as JSON at ``path``, written whole (a full disk left a cut file, in place
    of the report ``--overwrite`` was to replace)."""
    p = Path(home_expanded(str(path)))  # '~/r.json' was written into a folder '~' of the working one
    text = report_json(report)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the JSON report to {p}: {exc}") from exc
    return write_small_file(p, lambda tmp: tmp.write_text(text, encoding="utf-8"), "JSON report")


def _first_difference(a: str, b: str) -> int:
    """The index of the first character where ``a`` and ``b`` differ (the shorter's length if none)."""
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _short_names(names: Sequence[str], width: int = PLOT_LABEL) -> list[str]:
    """``names`` cut to ``width`` characters for the plot, each told apart from the others.

    Each from the start of the word (``_``, ``/``, ``-``, ``.`` and spaces part words)
    where it differs from the name most like it, as much as fits; a lone name, its end.
    The last 24 characters gave every image of ``S2B_..._T33UUU_0001_l2a/B04_10m.tif``,
    ``..._0002_l2a/B04_10m.tif`` one label, and the plot's bars could not be told apart.
    """
    out = []
    for n in names:
        others = [o for o in names if o != n]
        if len(n) <= width:
            out.append(n)
            continue
        if not others:
            out.append("…" + n[-width:])
            continue
        differs = max(_first_difference(n, o) for o in others)
        word = max((m.end() for m in re.finditer(r"[_/\-. ]", n[:differs])), default=0)
        end = min(len(n), max(word, differs - width // 2) + width)
        start = end - width
        out.append(("…" if start else "") + n[start:end] + ("…" if end < len(n) else ""))
    return out


def write_plot(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the gain over bicubic per image and band (needs matplotlib)."""
    from geosr.panels import detached_figure

    labels, gains, colours = [], [], []
    stems = [name.rsplit(".", 1)[0] if "." in Path(name).name else name for name in image_names(report)]
    for im, stem in zip(report.images, _short_names(stems), strict=True):
        for b in im.bands:
            label = f"{stem} b{b.band}"
            # A band without a finite gain gets an empty bar (matplotlib cannot draw an
            # infinite one), marked as such, rather than vanishing from the chart.
            labels.append(label if b.scored else f"{label} (n/a)")
            gains.append(b.gain_db if b.scored else 0.0)
            colours.append("tab:gray" if not b.scored else "tab:green" if b.gain_db >= 0 else "tab:red")
    try:
        fig = detached_figure((max(4.0, 0.5 * len(labels) + 2), 3.5))
    except ImportError as exc:
        raise OptionError("--plot needs matplotlib: pip install matplotlib") from exc
    ax = fig.subplots()
    ax.bar(range(len(gains)), gains, color=colours)
    ax.axhline(0, color="black", linewidth=0.8)
    # parse_math off, as in the compare figure (geosr.panels): a '$' in a file or model name began
    # TeX (mathtext), which drew 'cost$_x2$' as cost with a subscript x2 and failed on 'a$\frac$'.
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7, parse_math=False)
    ax.set_ylabel("PSNR gain over bicubic (dB)")
    ax.set_title(f"{report.model} x{report.scale} ({report.mode})", parse_math=False)
    fig.tight_layout()
    p = Path(home_expanded(str(path)))  # as write_json's
    # Written whole, as the JSON: the temporary's name has no image suffix, so the format is given.
    return write_small_file(p, lambda tmp: fig.savefig(tmp, dpi=120, format=p.suffix[1:].lower()), "plot")
