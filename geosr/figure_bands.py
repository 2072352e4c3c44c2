"""Which bands a compare or --quicklook figure shows, and where each panel's source holds them.

The output's red, green and blue by their names or colour interpretation, else its first band
in grey (a cube's dates are no colours); the same bands in the LR input (by the numbers a
``--bands`` run records, else by name) and in a reference (by name, else by its own colours);
and the words the figure's title gives them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from geosr.errors import InputError
from geosr.io.bands import canonical_band_name
from geosr.io.scene import Scene

RGB_NAMES = (("B4", "B3", "B2"), ("RED", "GREEN", "BLUE"))
"""Band names (as :func:`colour_name` spells them) that say red, green and blue: Sentinel-2's
and Landsat 8/9's numbers, and the colours' own names."""
LANDSAT_TM_RGB = ("B3", "B2", "B1")
"""Landsat 4-7's (TM, ETM+) red, green and blue, whose B4 is the near infrared: taken where the
file names its mission (:func:`landsat_tm`), else Landsat 8/9's (and Sentinel-2's) B4, B3, B2."""
_LANDSAT_TM = re.compile(r"(?<![A-Z0-9])(L[TEM]0[4-7]_|L[TEM][4-7]\d{6}|LANDSAT[_ -]?[4-7](?!\d))")
"""A Landsat 4-7 product ID (LE07_L2SP_...), scene ID (LT50440342011...) or spacecraft (LANDSAT_7)."""
NEAR_INFRARED_NM = (700.0, 1000.0)
"""Wavelengths of the near infrared, where Landsat 4-7's B4 is (760-900 nm); Landsat 8/9's and
Sentinel-2's B4 is red (655, 665 nm)."""
_MICROMETRES = ("micrometers", "micrometres", "micrometer", "micrometre", "microns", "micron", "um", "µm")
_NANOMETRES = ("nanometers", "nanometres", "nanometer", "nanometre", "nm")


def colour_name(description: str) -> str:
    """A band's ``description`` as :data:`RGB_NAMES` spell it: Landsat Collection 2's surface
    reflectance SR_B4 as B4, and GDAL's Sentinel-2 'B4, central wavelength 665 nm' as B4, which
    were no colours to a figure (its first three bands shown: SR_B1, coastal aerosol, as red)."""
    return canonical_band_name(description.split(",", 1)[0].strip().upper().removeprefix("SR_"))


def landsat_tm(scene: Scene) -> bool:
    """Whether ``scene`` says it is of Landsat 4, 5 or 7: its file's name, or a tag (an output's
    GEOSR_SOURCE names its input, a SPACECRAFT_ID its mission), holds such a product or scene ID
    or spacecraft name; or its B4's wavelength is in the near infrared (:func:`b4_near_infrared`)."""
    said = [Path(scene.path).name, *(str(v) for v in scene.tags.values())]
    return any(_LANDSAT_TM.search(text.upper()) for text in said) or b4_near_infrared(scene)


def b4_near_infrared(scene: Scene) -> bool:
    """Whether the band of ``scene`` named B4 has a wavelength (a ``wavelength`` band tag, as
    GDAL gives an ENVI file's bands) in the near infrared: a Landsat 4-7 stack whose name does
    not say its mission was shown as Landsat 8/9's B4, B3, B2, its near infrared as red."""
    names = [colour_name(d or "") for d in scene.descriptions]
    if "B4" not in names or len(scene.band_tags) != len(names):
        return False
    nm = wavelength_nm(scene.band_tags[names.index("B4")])
    return nm is not None and NEAR_INFRARED_NM[0] < nm < NEAR_INFRARED_NM[1]


def wavelength_nm(tags: Mapping[str, str]) -> float | None:
    """A band's ``wavelength`` tag in nanometres (in micrometres where its ``wavelength_units``
    say so, or, without units of length (ENVI's 'Unknown'), below 100), or None where it has
    none that is a number."""
    lower = {key.lower(): str(value).strip() for key, value in tags.items()}
    try:
        value = float(lower.get("wavelength", ""))
    except ValueError:
        return None
    units = lower.get("wavelength_units", "").lower()
    micrometres = units in _MICROMETRES or (units not in _NANOMETRES and value < 100)
    return value * 1000 if micrometres else value


def display_bands(scene: Scene, wanted: Sequence[int] | None = None) -> list[int]:
    """0-based positions of the bands to show: red, green, blue when the names say so."""
    if wanted:
        return list(wanted)
    if scene.count < 3 or scene.band_axis != "band":
        return [0]  # one band in grey; the dates of a cube are not colours
    return rgb_bands(scene) or [0, 1, 2]


def rgb_bands(scene: Scene) -> list[int] | None:
    """0-based positions of ``scene``'s red, green and blue bands, by their names or their
    colour interpretation; None when neither says."""
    if scene.count < 3 or scene.band_axis != "band":
        return None
    names = [colour_name(d or "") for d in scene.descriptions] if scene.descriptions else []
    numbers = LANDSAT_TM_RGB if landsat_tm(scene) else RGB_NAMES[0]
    for rgb in (numbers, *RGB_NAMES[1:]):
        if names and all(n in names for n in rgb):
            return [names.index(n) for n in rgb]
    interp = [c.lower() for c in scene.colorinterp]
    if all(c in interp for c in ("red", "green", "blue")):
        return [interp.index(c) for c in ("red", "green", "blue")]
    return None


def eight_bit_rgb(scene: Scene) -> bool:
    """Whether ``scene`` is 8-bit colour, as photographs and display composites are: bytes without
    a scale or offset, of red, green and blue by their colour interpretation (a photometric RGB
    GeoTIFF's).  Its figure stretches every band alike (:func:`~geosr.panels.stretch_limits`)."""
    interp = [c.lower() for c in scene.colorinterp]
    unscaled = all(v == 1 for v in scene.scales) and all(v == 0 for v in scene.offsets)
    return scene.dtype == "uint8" and unscaled and all(c in interp for c in ("red", "green", "blue"))


def reference_bands(
    sr_scene: Scene,
    reference: Scene,
    show: Sequence[int],
    source: Scene | None = None,
    from_source: Sequence[int] | None = None,
) -> list[int]:
    """0-based positions in ``reference`` of the output's bands ``show``: those of the same names
    (:func:`same_named_bands`); where the names do not say, and ``reference`` is laid out as
    ``source``, the LR input (:func:`same_layout`), the positions ``from_source`` the bicubic
    panel took from it; else, where ``show`` are the output's red, green and blue, the
    reference's own (:func:`rgb_bands`): an RGB orthophoto (its colour interpretation, no band
    names) against an output of B2,B3,B4 (shown as B4,B3,B2: positions 2,1,0) was shown from its
    own positions 2,1,0, blue as red and red as blue.

    A false-colour ``--bands 4,1,2`` run of a NAIP file (red, green, blue, near infrared, no band
    names) against the same NAIP product as ``--hr`` had its reference drawn from bands 1, 2, 3:
    red, green, blue beside the other panels' near infrared, red, green.
    """
    named = same_named_bands(sr_scene, reference, show)
    if named != list(show):
        return named
    if source is not None and from_source is not None and same_layout(source, reference):
        return list(from_source)
    if list(show) != rgb_bands(sr_scene):
        return named
    return rgb_bands(reference) or named


def same_layout(scene: Scene, other: Scene) -> bool:
    """Whether ``other`` holds its bands as ``scene`` does: as many, in the file's same numbers,
    of the same names and colour interpretations (a product at another resolution)."""

    def layout(s: Scene) -> tuple[object, ...]:
        numbers = tuple(s.bands) or tuple(range(1, s.count + 1))
        return s.count, numbers, tuple(s.descriptions), tuple(c.lower() for c in s.colorinterp)

    return layout(scene) == layout(other)


def source_bands(sr_scene: Scene, source: Scene, show: Sequence[int]) -> list[int]:
    """0-based positions in ``source`` (the LR input) of the output's bands ``show``.

    The output of a ``--bands`` run records the input's band numbers it holds
    (``GEOSR_BANDS``): its band 1 may be the input's band 3.  Without that record,
    or when ``source`` lacks those bands (another file), the bands of the same names
    (:func:`same_named_bands`).
    """
    numbers = recorded_bands(sr_scene)
    positions = None if numbers is None else read_positions(source, numbers)
    if positions is None:
        return same_named_bands(sr_scene, source, show)
    return [positions[p] for p in show]


def recorded_bands(sr_scene: Scene) -> list[int] | None:
    """The input's band numbers (1-based) the output ``sr_scene`` holds, one per band, as the
    run recorded them (``GEOSR_BANDS`` of a ``--bands`` run); None without a usable record."""
    recorded = sr_scene.tags.get("GEOSR_BANDS", "")
    try:
        numbers = [int(v) for v in recorded.split(",")] if recorded else []
    except ValueError:
        return None
    return numbers if numbers and len(numbers) == sr_scene.count else None


def read_positions(scene: Scene, numbers: Sequence[int]) -> list[int] | None:
    """0-based positions, in a read of ``scene``, of its file's bands ``numbers`` (1-based, as
    ``--bands`` and ``GEOSR_BANDS`` give them); None where it lacks one.

    A read gives the scene's bands alone (:attr:`~geosr.io.scene.Scene.bands`): the alpha band of
    an ARGB file is not in it, and band number - 1 showed each input band's neighbour (G, B, N
    of an ARGBN orthomosaic as red, green, blue) in the bicubic panel.
    """
    held = list(scene.bands) or list(range(1, scene.count + 1))
    if not all(n in held for n in numbers):
        return None
    return [held.index(n) for n in numbers]


def same_named_bands(sr_scene: Scene, other: Scene, show: Sequence[int]) -> list[int]:
    """0-based positions in ``other`` of the bands named as the output's bands ``show``; the
    same positions when the names do not say (a band without a name, or a name ``other``
    lacks or holds twice).

    A reference stacked B04,B03,B02 against an output of B02,B03,B04 (shown as B04,B03,B02:
    positions 2,1,0) was shown from its own positions 2,1,0, blue as red and red as blue.  Names
    are compared as :func:`colour_name` spells them: a reference's SR_B8 or 'B8, central wavelength
    842 nm' was no output's B08.
    """
    wanted = [sr_scene.descriptions[p] if p < len(sr_scene.descriptions) else None for p in show]
    names = [colour_name(d) if d else None for d in other.descriptions]
    found = [colour_name(w) for w in wanted if w]
    if len(found) < len(show) or not all(names.count(n) == 1 for n in found):
        return list(show)
    return [names.index(n) for n in found]


def check_bands(scene: Scene, positions: Sequence[int], sr: str) -> None:
    """One line, not an IndexError, when ``scene`` lacks a band shown from ``sr``."""
    if max(positions) >= scene.count:
        shown = ",".join(str(p + 1) for p in positions)
        raise InputError(
            f"{scene.path} has {scene.count} band{'' if scene.count == 1 else 's'}, fewer than the "
            f"bands {shown} shown from {sr}; pick bands both have with --bands, or compare the input "
            "and output of one run"
        )


def shown_bands(scene: Scene, show: Sequence[int]) -> str:
    """What the figure says of the bands ``show`` (0-based) of ``scene``, the output: their
    descriptions, else their numbers, and how they are drawn.  It said nothing: bands 1, 2, 3
    of an unnamed 8-band file, or the near infrared of a false-colour --bands run, were
    drawn as red, green, blue without a word, and one date of a cube as 'the' image.  The
    unnamed bands of a ``--bands`` run's output are said by the input's numbers too
    (:func:`recorded_bands`)."""
    named = [scene.descriptions[p] if p < len(scene.descriptions) else None for p in show]
    numbers = [scene.bands[p] if scene.bands else p + 1 for p in show]
    said = ",".join(str(n) for n in (named if all(named) else numbers))
    taken = recorded_bands(scene)
    if not all(named) and taken is not None and [taken[p] for p in show] != numbers:
        # A --bands 4,1,2 run's output holds the input's bands 4, 1, 2 as its 1, 2, 3: the
        # title said "bands 1,2,3", numbers the user never picked.  Both: --bands of compare
        # counts the output's.
        picked = ",".join(str(taken[p]) for p in show)
        said = f"{picked} of the input (the output's {said})"
    if len(show) == 1:
        return f"band {said} in grey"
    return f"bands {said} as red, green, blue"
