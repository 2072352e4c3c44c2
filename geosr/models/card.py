"""Model cards: the JSON file beside every weights file that says what the weights expect.

A card is written by training and read by :func:`geosr.models.load_model`.
It tells the pipeline which architecture to build, for which scale and bands,
and how to normalise the input so that it matches what the model was trained on.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from geosr.errors import ModelError
from geosr.normalise import DIVISOR_DTYPES

ARCHITECTURES = ("cnnrnn", "edsr", "bicubic")
NORMALISATION_METHODS = ("dtype-range", "percentile")
REQUIRED_FIELDS = ("name", "architecture", "config", "scale")
UNKNOWN = "unknown"
"""``date`` and ``geosr_version`` of a card read without them."""


def _default_normalisation() -> dict[str, Any]:
    return {"method": "percentile"}


def _number(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _normalisation_problem(norm: dict[str, Any]) -> str | None:
    """What is wrong with the numbers of a card's ``normalisation``, or ``None``.

    Checked when the card is read, so that a bad card is refused in one line before
    any run, rather than failing mid-run or normalising the scene into garbage.
    """
    if norm["method"] == "percentile":
        low, high = (_number(norm.get(k, d)) for k, d in (("low", 0.1), ("high", 99.9)))
        if low is None or high is None or not 0 <= low < high <= 100:
            return (
                f"percentiles low={norm.get('low', 0.1)!r} high={norm.get('high', 99.9)!r} "
                "must be numbers with 0 <= low < high <= 100"
            )
        return None
    for key in DIVISOR_DTYPES:
        if key in norm and not (_number(norm[key]) or 0) > 0:
            return f"dtype-range divisor {key}={norm[key]!r} must be a positive number"
    return None


def json_ready(value: Any) -> Any:
    """``value`` with each NaN or infinite float spelt ``"nan"``, ``"inf"`` or ``"-inf"``, as
    STAC spells a NaN nodata.

    JSON has no such numbers: Python wrote ``NaN`` into cards (a training source's NaN
    nodata), which JavaScript's ``JSON.parse`` and other strict parsers refuse, and jq
    reads as null.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def geosr_version() -> str:
    """geosr's version, as the outputs' provenance tags give it (``geosr.__version__``).

    Not read from the installed package's metadata: parsing it took 20-25 ms of
    every run (the bicubic model's card is made per run), and a test keeps the two equal.
    """
    from geosr import __version__

    return __version__


def today() -> str:
    """Today's date (UTC), ISO 8601."""
    return dt.datetime.now(dt.UTC).date().isoformat()


@dataclass(frozen=True)
class ModelCard:
    """What a set of weights is and what it expects.

    Parameters
    ----------
    name : str
        Model name (``"cnnrnn-fast"``), shown in ``geosr models`` and provenance tags.
    architecture : {"cnnrnn", "edsr", "bicubic"}
        Which class to build.
    config : dict
        Constructor arguments of the architecture (for ``cnnrnn`` the fields of
        :class:`geosr.models.cnnrnn.CNNRNNConfig`, ``scale`` included).
    scale : int
        The one scale the weights were trained for.
    bands : list of str or None
        Band layout the model expects, e.g. ``["B2", "B3", "B4", "B8"]``;
        ``None`` for a band-agnostic model (any band count).
    normalisation : dict
        How the pipeline must normalise the input.  Keys it reads:

        ``method``
            ``"percentile"`` (scene-global 0.1/99.9 percentiles per band, any
            dtype) or ``"dtype-range"`` (divide by a fixed value per dtype).
        ``uint8``, ``uint16``, ... (``dtype-range`` only; any of :data:`geosr.normalise.DIVISOR_DTYPES`)
            The divisor for that input dtype, e.g. ``255`` and ``10000``.  Without one,
            uint8 is divided by 255, uint16 and int16 by 10000, floats by 1, and a scene of
            another dtype is refused.

        Other keys are kept for the record and ignored.
    training : dict
        Provenance: ``data``, ``recipe``, ``steps``, ``seconds``, or a ``note``; fine-tuned
        weights add ``init``, the weights they started from (path, name, date, version, steps).
        ``data`` and ``validation`` (written by geosr train) list the rasters, or name the
        training store: absolute paths, or under ``${GEOSR_DATA_DIR}`` or ``~`` as the recipe
        wrote them.  ``recipe`` is as given, relative to the folder training ran in.
    metrics : dict
        Validation results, e.g. ``{"psnr": 31.2, "psnr_bicubic": 29.8}``.
    geosr_version : str
        Version that wrote the card.
    date : str
        ISO date the card was written.
    """

    name: str
    architecture: str
    config: dict[str, Any]
    scale: int
    bands: list[str] | None = None
    normalisation: dict[str, Any] = field(default_factory=_default_normalisation)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    geosr_version: str = field(default_factory=geosr_version)
    date: str = field(default_factory=today)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ModelError(f"model card 'name' must be a non-empty string, got {self.name!r}")
        if self.architecture not in ARCHITECTURES:
            raise ModelError(
                f"model card {self.name}: unknown architecture {self.architecture!r}; "
                f"expected one of {', '.join(ARCHITECTURES)}"
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ModelError(
                f"model card {self.name}: 'scale' must be a positive integer, got {self.scale!r}"
            )
        if not isinstance(self.config, dict):
            raise ModelError(f"model card {self.name}: 'config' must be an object, got {self.config!r}")
        if self.config.get("scale", self.scale) != self.scale:
            raise ModelError(
                f"model card {self.name}: config scale {self.config['scale']} "
                f"differs from card scale {self.scale}"
            )
        if self.bands is not None and (
            not isinstance(self.bands, list)
            or not self.bands
            or not all(isinstance(b, str) for b in self.bands)
        ):
            raise ModelError(
                f"model card {self.name}: 'bands' must be a non-empty list of band names "
                f"or null (band-agnostic), got {self.bands!r}"
            )
        for key in ("normalisation", "training", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise ModelError(f"model card {self.name}: {key!r} must be an object")
        method = self.normalisation.get("method")
        if method not in NORMALISATION_METHODS:
            raise ModelError(
                f"model card {self.name}: normalisation method {method!r} is not known; "
                f"expected one of {', '.join(NORMALISATION_METHODS)}"
            )
        problem = _normalisation_problem(self.normalisation)
        if problem:
            raise ModelError(f"model card {self.name}: normalisation {problem}")

    @classmethod
    def untrained(
        cls, name: str, architecture: str, config: dict[str, Any], scale: int, note: str
    ) -> ModelCard:
        """The card of a freshly built model: band-agnostic, ``training={"note": note}``."""
        return cls(name, architecture, config, scale, training={"note": note})

    @property
    def is_untrained(self) -> bool:
        """A learnable architecture that no training has touched (its :meth:`untrained` note
        says so): it then computes bicubic (+ projection), whatever its name."""
        return str(self.training.get("note", "")).startswith("untrained")

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The card as indented JSON text, strict JSON (see :func:`json_ready`)."""
        return json.dumps(json_ready(self.to_dict()), indent=2, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: object, *, source: str = "model card") -> ModelCard:
        """Build a card from parsed JSON; ``source`` names the file in error messages.

        Raises
        ------
        ModelError
            When a required field (``name``, ``architecture``, ``config``,
            ``scale``) is missing or a field has the wrong type.  Unknown fields
            are ignored so that newer cards still load; a missing ``date`` or
            ``geosr_version`` reads as ``"unknown"``.
        """
        if not isinstance(data, dict):
            raise ModelError(f"{source} must be a JSON object, got {type(data).__name__}")
        missing = [key for key in REQUIRED_FIELDS if key not in data]
        if missing:
            raise ModelError(
                f"{source} has no {', '.join(repr(m) for m in missing)} field; "
                f"a model card needs {', '.join(REQUIRED_FIELDS)}"
            )
        known = {f.name for f in fields(cls)}
        # Not today's date and this geosr's version, the defaults of a card being written: a
        # card written by hand without them was read as written today, and a model fine-tuned
        # from it recorded that of its parent.
        data = {"geosr_version": UNKNOWN, "date": UNKNOWN, **data}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ModelError as exc:
            # The card's own name may be a bundled model's ("cnnrnn-fast" for weights
            # fine-tuned from it): the file is what the user must fix.
            raise ModelError(f"{source}: {exc}" if source != "model card" else str(exc)) from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "model card") -> ModelCard:
        """Parse :meth:`to_json` output; see :meth:`from_dict` for the errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=source)
