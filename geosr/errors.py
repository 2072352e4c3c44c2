"""One root error for everything a user can get wrong, and the warning category.

Every subclass also inherits the matching builtin, so that ``except ValueError``
keeps working for callers who do not know geosr.  The CLI turns any
:class:`GeosrError` into one readable line on stderr and exit status 2; its
message must therefore say what was given, what was expected and how to fix it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec, TextIO, TypeVar, cast


def in_words(words: Sequence[str]) -> str:
    """``words`` as a sentence lists them: 'steps', 'lr and steps', 'data, lr and steps', where a
    Python list in a user's line read "differs in ['steps']"."""
    *first, last = words
    return f"{', '.join(first)} and {last}" if first else last


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` as a sentence counts: '1 file', '3 files' (``plural`` where it is
    not the noun and an s), where '3 file(s)' read as a form."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


class GivenNumber(float):
    """A number read from text (``--nodata 1e-3``, ``nodata="300"``) that keeps the text, so
    that a line about it shows the number as it was given (:func:`number_text`)."""

    given: str

    def __new__(cls, text: str) -> GivenNumber:
        number = super().__new__(cls, text)
        number.given = text.strip()
        return number

    def __reduce__(self) -> tuple[type[GivenNumber], tuple[str]]:
        return GivenNumber, (self.given,)  # a Dask worker's copy keeps the text too


def number_text(value: float) -> str:
    """``value`` as a user's line shows it: as given (:class:`GivenNumber`), else a whole
    number without '.0' and any other in Python's shortest form ('0.001', 'nan', '-inf').

    A --nodata 300 was said back as "nodata 300.0", a value the user never typed.
    """
    given = getattr(value, "given", None)
    if isinstance(given, str):
        return given
    number = float(value)
    if math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


class GeosrError(Exception):
    """Root of every error geosr raises on purpose (bad input, bad option)."""

    exit_code = 2


class InputError(GeosrError, ValueError):
    """The input raster (or a frame, AOI, STAC item) cannot be used as given."""


class OptionError(GeosrError, ValueError):
    """An option value is out of range or inconsistent with the others."""


class SchedulerUnreachableError(OptionError):
    """No Dask scheduler answers at ``--scheduler``: every input of a batch would fail alike."""


class OutputError(GeosrError, OSError):
    """The output cannot be written where or how it was asked for."""


class ModelError(GeosrError, ValueError):
    """A model name, weights file or model card is unknown, unsafe or inconsistent."""


class GeosrWarning(UserWarning):
    """Something the user should know about, where geosr could still go on."""


_FILTERS_HELD = threading.RLock()


@contextlib.contextmanager
def catch_warnings_serialised() -> Iterator[None]:
    """``warnings.catch_warnings()``, entered by one of geosr's threads at a time.

    ``catch_warnings`` saves the process's warning filters and puts them back as it ends:
    two runs in two threads of one process interleaved those steps, and the one that ended
    last put back a copy holding the other's temporary filters, which stayed in the caller's
    process (rasterio's NotGeoreferencedWarning and zarr's consolidated-metadata warning
    ignored for good).  Only for short steps that wait on no other thread of geosr's.
    """
    with _FILTERS_HELD, warnings.catch_warnings():
        yield


_Filter = tuple[str, "re.Pattern[str] | None", type[Warning], "re.Pattern[str] | None", int]


@contextlib.contextmanager
def filter_added(action: str, message: str = "", category: type[Warning] = Warning) -> Iterator[None]:
    """Within: ``warnings.filterwarnings(action, message, category)``; after: that filter gone,
    and every other one as the process has it then.

    For steps that last a whole run, which :func:`catch_warnings_serialised` cannot hold its
    lock over (the run's own threads take it: an in-process Dask worker opening the scene).
    ``catch_warnings`` put back, at its end, the filters it had found at its start: a filter
    another thread of the process set meanwhile was dropped.  The filter also applies to the
    process's other threads while it is in place.
    """
    pattern = re.compile(message, re.IGNORECASE) if message else None
    entry: _Filter = (action, pattern, category, None, 0)  # a new object: removed by identity
    filters = cast("list[_Filter]", warnings.filters)
    with _FILTERS_HELD:
        # Not filterwarnings(), which first takes out an equal filter already there (pytest.warns'
        # "always", say): removing ours would then remove the caller's too.
        filters.insert(0, entry)
        warnings._filters_mutated()  # type: ignore[attr-defined]  # forget what was shown once
    try:
        yield
    finally:
        with _FILTERS_HELD:
            filters = cast("list[_Filter]", warnings.filters)
            for i, other in enumerate(filters):
                if other is entry:
                    del filters[i]
                    break
            warnings._filters_mutated()  # type: ignore[attr-defined]


_RECORDS: dict[int, list[warnings.WarningMessage]] = {}
"""The warnings recorded so far by each thread (by ident) inside :func:`warnings_recorded`."""
_SHOWN_BEFORE = [warnings.showwarning]
"""The ``warnings.showwarning`` that :func:`_record_or_show` passes other threads' warnings to."""


def _record_or_show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    records = _RECORDS.get(threading.get_ident())
    if records is None:
        _SHOWN_BEFORE[0](message, category, filename, lineno, file, line)
    else:
        records.append(warnings.WarningMessage(message, category, filename, lineno, file, line))


@contextlib.contextmanager
def warnings_recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Within: the warnings this thread issues are recorded in the list given, not shown: those
    the filters in force would show, and every :class:`GeosrWarning` (an ``"always"`` filter, so
    that each is rewritten, not one that a location shown once before keeps back); other
    threads' are shown as before.

    What ``catch_warnings(record=True)`` did for the thread that entered it, without its
    process-wide save and restore (see :func:`filter_added`): a run's warnings are kept from
    the caller, rewritten and issued again (:mod:`geosr.evaluation.wald`).  Not all warnings
    "always": issued again at the caller's line, a library's DeprecationWarning, which Python
    shows in ``__main__`` only, came out there, and one the caller ignored by its module
    (``module="rasterio"``) came out as the caller's.
    """
    records: list[warnings.WarningMessage] = []
    thread = threading.get_ident()
    with _FILTERS_HELD:
        if not _RECORDS and warnings.showwarning is not _record_or_show:
            _SHOWN_BEFORE[0] = warnings.showwarning
            warnings.showwarning = _record_or_show
        _RECORDS[thread] = records
    try:
        with filter_added("always", category=GeosrWarning):
            yield records
    finally:
        with _FILTERS_HELD:
            del _RECORDS[thread]
            if not _RECORDS and warnings.showwarning is _record_or_show:
                warnings.showwarning = _SHOWN_BEFORE[0]


def warn_again(warning: warnings.WarningMessage, text: str) -> None:
    """Issue ``warning``, recorded by :func:`warnings_recorded`, again as ``text``, from where it came.

    Issued again with its text and category alone, at the caller's line, a library's warning (a
    DeprecationWarning of rasterio's, say) seemed the caller's own: a filter by the library's module
    no longer applied, and one by the caller's (pytest's on ``tests``) applied to it.  geosr's own
    warnings already point at the caller's line (:func:`warn`), and are worded for it again.
    """
    if issubclass(warning.category, GeosrWarning):
        warn(text, warning.category)
        return
    # warnings.warn's module name, which the filters match; with no module loaded from the file,
    # its name without .py (warn_explicit's, which takes module=None as a name no filter matches).
    # No registry: the module's has this warning as shown already.
    module = next(
        (m.__name__ for m in list(sys.modules.values()) if getattr(m, "__file__", None) == warning.filename),
        warning.filename.removesuffix(".py"),
    )
    warnings.warn_explicit(text, warning.category, warning.filename, warning.lineno, module=module)


class ResumableError(GeosrError, RuntimeError):
    """The run stopped part way (e.g. its Dask scheduler was lost); ``--resume`` finishes it."""

    lost_option: str | None = None
    """An option the command printed to resume it leaves out, with its value: the ``--scheduler``
    that was lost (as printed, the resume waited 20 s for it, then failed)."""


class SchedulerLostError(ResumableError):
    """The run lost its Dask scheduler; ``--resume`` finishes it, here or on a cluster."""

    lost_option = "--scheduler"


class InterruptedRunError(ResumableError):
    """The user interrupted the run (Ctrl-C); ``--resume`` finishes it."""

    exit_code = 130


def in_context(path: str | Path, exc: GeosrError) -> GeosrError:
    """The same error, its message prefixed by the file it is about (unless already)."""
    message = str(exc)
    if message.startswith(str(path)):
        return exc
    return type(exc)(f"{path}: {message}")


_COMMAND_LINE = contextvars.ContextVar("geosr_command_line", default=False)
_FLAG = re.compile(
    r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])(?![\w-])"  # a flag (or a short one), then perhaps its value:
    r"(?: (-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?!\w|[.,]\w)|'[^']*'|(?:True|False|None)\b"
    r"|(\w[\w-]*(?:[.:]\w[\w-]*)*(?:,\w[\w-]*(?:[.:]\w[\w-]*)*)*(?:,\.\.\.)?)))?"  # a word, a list
)
TEXT_VALUES = {
    "--device": r"auto|cpu|cuda(?::\d+)?",
    "--precision": r"auto|fp32|bf16|fp16",
    "--compile": r"auto|on|off",
    "--bands": r"\w+(?:,\w+)+(?:,\.\.\.)?|[A-Za-z]*\d\w*",  # a list (KEY1,KEY2,...), or one band: B04, 3
    "--model": r"(?:cnnrnn|edsr|bicubic)[\w-]*",
    "-m": r"(?:cnnrnn|edsr|bicubic)[\w-]*",
    "--bbox": r"[\w.-]+(?:,[\w.-]+){3}",  # minx,miny,maxx,maxy
    "--bbox-crs": r"[A-Z]+:\w+",  # EPSG:32633
    "--variable": r"[A-Za-z_]\w*",  # no message has a word of its own after --variable
}
"""The bare words after a flag that are its value, a text to the Python API ("--precision bf16":
``precision='bf16'``, "--bands 2,1": ``bands='2,1'``); other words after it are the sentence's
("--tile sets the tile")."""
P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def command_line_wording() -> Iterator[None]:
    """Within: a :func:`python_api` function's errors keep naming the flags (``--overwrite``),
    since the ``geosr`` command that called it is what its user typed."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def flag_keywords(defaults: Mapping[str, object], **flags: str) -> dict[str, str]:
    """What a Python caller gives for each command-line flag of the parameters ``defaults``.

    A bool parameter's flag switches it (``--resume``: ``resume=True``, and for one true by
    default ``--no-check-resources``: ``check_resources=False``); any other's flag is its name
    in kebab case (``--batch-size``: ``batch_size``).  ``flags`` adds flags named otherwise
    (``--frame``: ``frames``) and the short ones (``-o``: ``dst``), which no parameter names.
    """
    words = {}
    for name, default in defaults.items():
        kebab = name.replace("_", "-")
        if isinstance(default, bool):
            words[f"--no-{kebab}" if default else f"--{kebab}"] = f"{name}={not default}"
        else:
            words[f"--{kebab}"] = name
    return {**words, **flags}


def in_python_words(text: str, keywords: Mapping[str, str]) -> str:
    """``text`` with each flag of ``keywords`` as its keyword: "pass --overwrite" reads "pass
    overwrite=True", "--nodata 0" reads "nodata=0" (a number, a quoted text, True, False or None
    after a flag is its value, joined to its keyword), "--precision bf16" reads "precision='bf16'"
    (a word of :data:`TEXT_VALUES`, quoted as the text the keyword takes).
    Flags the mapping does not know stay as they are, and so do those of a command in backticks."""

    def keyword(match: re.Match[str]) -> str:
        word = keywords.get(match[1])
        if word is None:
            return match[0]
        after = match[0][len(match[1]) :]
        if match[2] is None or not re.fullmatch(r"[\w.]+", word):
            # No value; or a switch (a number after it is the text's), or no keyword to join it to.
            return word + after
        value = match[2].strip("'") if match[3] is None else match[3]
        shape = TEXT_VALUES.get(match[1])
        # A number is the value as given: "bands=3 is not supported: give ... text" is of an int.
        if shape is not None and (
            match[2].startswith("'") or (match[3] is not None and re.fullmatch(shape, value))
        ):
            return f"{word}={value!r}"  # the API takes it as text
        return word + after if match[3] is not None else f"{word}={match[2]}"

    # A command in backticks (`geosr compare --window ...`) keeps its flags: it is to be typed as such.
    return "".join(
        part if part.startswith("`") else _FLAG.sub(keyword, part) for part in re.split(r"(`[^`]*`)", text)
    )


_KEYWORDS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "geosr_keywords", default=None
)
"""The keywords of the Python API entry point the user called, while it runs (None: none runs)."""


def current_keywords() -> Mapping[str, str] | None:
    """The keywords geosr's lines name in this context (:func:`keyword_wording`), None for its flags."""
    return _KEYWORDS.get()


@contextlib.contextmanager
def keyword_wording(keywords: Mapping[str, str] | None) -> Iterator[None]:
    """Within: :func:`worded` lines and the :class:`GeosrError` leaving name ``keywords``
    (:func:`in_python_words`) where they named flags; ``None`` leaves them as they are.

    The outermost entry point's keywords win (``upscale_file`` calling ``load_model`` says
    ``model``, not ``name_or_path``), and :func:`command_line_wording` keeps the flags.  A
    context variable, not warning filters, which are the process's: another thread of the host
    keeps its own wording.  The tasks of a lazy result enter it again with the keywords of the
    call that built them, since they run after it has returned.
    """
    if keywords is None or _KEYWORDS.get() is not None or _COMMAND_LINE.get():
        yield
        return
    token = _KEYWORDS.set(keywords)
    try:
        yield
    except GeosrError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (in_python_words(exc.args[0], keywords), *exc.args[1:])
        raise
    finally:
        _KEYWORDS.reset(token)


def worded(text: str) -> str:
    """``text``, a warning's, in the words of who called geosr: a Python caller's keywords
    (``pass nodata=0``) inside an API entry point, the command's flags (``pass --nodata 0``)
    otherwise.  What :func:`python_api` does for the errors leaving it, for a warning, which
    is shown where it is issued."""
    keywords = _KEYWORDS.get()
    return text if keywords is None else in_python_words(text, keywords)


_PACKAGE = f"{Path(__file__).absolute().parent}{os.sep}"  # not resolve(): frames keep symlinks
"""geosr's folder, which :func:`warn` looks past for the line to point at."""
_LOOKED_PAST = (_PACKAGE, contextlib.__file__)
"""Where :func:`warn` looks past: geosr, and contextlib, whose ``__exit__`` runs the end of a
``with`` block of geosr's (the Wald runs' warnings, issued again as the block ends, pointed at
contextlib.py, where neither a notebook's nor the caller's filter by module saw them)."""


def warn(message: str, category: type[Warning] = GeosrWarning) -> None:
    """Issue ``message`` (:func:`worded`) as a ``category`` warning at the first line outside geosr.

    That is the line of the caller's that called the API, where a notebook shows it and where a
    filter by module applies.  A fixed ``stacklevel`` pointed at one path's caller only: the
    warning about undeclared 0s pointed inside geosr/run_inputs.py from upscale_file, and
    load_model's about untrained weights at the python_api wrapper in geosr/errors.py.
    """
    frame = sys._getframe(1)
    level = 2  # warn's caller
    while frame is not None and frame.f_code.co_filename.startswith(_LOOKED_PAST):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(category(worded(message)), stacklevel=level)


def python_api(
    options: Mapping[str, object] | None = None, flags: Mapping[str, str] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function of the Python API: its :class:`GeosrError` lines name the keywords
    it takes (``overwrite=True``) where they named the ``geosr`` command's flags (``--overwrite``),
    which a Python caller cannot pass, and so do the warnings it issues (:func:`worded`).  Under
    :func:`command_line_wording` they stay as they are.

    The keywords are the function's parameters, ``options`` (the defaults of
    what its ``**options`` take) and ``flags``, as :func:`flag_keywords` reads them.  Every
    message keeps one wording inside geosr (the command's, which its tests pin and which error
    wrappers copy with ``str(exc)``): it is translated once, as it leaves the API.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        parameters = inspect.signature(func).parameters.values()
        # A parameter without a default is valued (``scale`` of load_model): no switch.
        defaults = {
            p.name: None if p.default is inspect.Parameter.empty else p.default
            for p in parameters
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }
        keywords = flag_keywords({**defaults, **(options or {})}, **(flags or {}))

        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            with keyword_wording(keywords):
                return func(*args, **kwargs)

        return call

    return decorate
