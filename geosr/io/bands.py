"""Bands by name, and the Sentinel-2 L2A reflectance offset.

``--bands B04,B03,B02,B08`` selects and orders bands by their descriptions (as
GDAL reports them, case-insensitive, with ``B4`` and ``B04`` the same band) or
by 1-based index; the output keeps the selected bands' descriptions and tags.

Sentinel-2 L2A products of processing baseline 04.00 and later (January 2022 on)
store ``DN = 10000 * reflectance - BOA_ADD_OFFSET`` with ``BOA_ADD_OFFSET =
-1000``, so that slightly negative reflectances survive in unsigned integers.
A model that expects reflectance (``dtype-range`` normalisation, ``DN / 10000``)
would be off by 0.1 without it.  :func:`reflectance_offset` finds the offset in
the tags GDAL reports for such products (``BOA_ADD_OFFSET``, per band or per
dataset, or ``BOA_ADD_OFFSET_B04``-style keys) unless ``--offset`` gives it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

from geosr.errors import InputError, OptionError
from geosr.io.scene import Scene, nodata_fields

OFFSET_TAG = "BOA_ADD_OFFSET"


def canonical_band_name(name: str) -> str:
    """``B4``, ``b04`` and ``B04`` name the same band; ``B8A`` stays itself."""
    name = name.strip().upper()
    match = re.fullmatch(r"B0*(\d+)(A?)", name)
    return f"B{int(match.group(1))}{match.group(2)}" if match else name


def check_band_layout(
    source: object,
    descriptions: Sequence[object],
    expected: Sequence[str] | None,
    model: str,
    fix: str = "select them with --bands {wanted}",
) -> None:
    """Refuse an input whose band ``descriptions`` name other bands, or another order, than a model's card.

    The count alone is checked when the model is loaded: a B8,B4,B3,B2 scene then ran
    through a B2,B3,B4,B8 model with every band in the wrong slot.  Only descriptions
    that are all band names (``B4``, ``B08``, ``B8A``) are compared; a scene without
    them ("Red", none) cannot be checked and runs as given.

    Raises
    ------
    InputError
        Naming both layouts and the ``--bands`` that selects the card's.
    """
    if not expected or len(descriptions) != len(expected) or not all(descriptions):
        return
    found = [canonical_band_name(str(d)) for d in descriptions]
    if not all(re.fullmatch(r"B\d+A?", name) for name in found):
        return
    if found != [canonical_band_name(b) for b in expected]:
        wanted = ",".join(expected)
        raise InputError(
            f"{source}: model {model} expects bands {wanted} in that order, the input's "
            f"are {','.join(str(d) for d in descriptions)}; " + fix.format(wanted=wanted)
        )


def parse_bands(text: str | Sequence[str | int]) -> tuple[str | int, ...]:
    """``"B04,B03,2"`` -> ``("B04", "B03", 2)``: names stay strings, digits become indexes."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str | int] = []
    for item in items:
        if isinstance(item, int):
            out.append(item)
            continue
        item = item.strip()
        if not item:
            raise OptionError(f"--bands {text!r} has an empty entry; give e.g. B04,B03,B02 or 3,2,1")
        out.append(int(item) if item.isdigit() else item)
    return tuple(out)


def band_indexes(scene: Scene, wanted: Sequence[str | int]) -> tuple[int, ...]:
    """1-based file band indexes for ``wanted`` (names or indexes), in that order."""
    available = scene.bands or tuple(range(1, scene.count + 1))
    names: dict[str, int] = {}
    for position, description in enumerate(scene.descriptions):
        if description:
            names.setdefault(canonical_band_name(description), available[position])
    # Each with its band number (an undescribed one was '#1', its position, which is not its
    # number after an alpha band), and a file of no descriptions said so.
    described = [f"{available[i]} {d!r}" for i, d in enumerate(scene.descriptions) if d]
    known = "it has no band descriptions"
    if described:
        known = f"its band descriptions are {', '.join(described)}"
    out = []
    for item in wanted:
        if isinstance(item, int):
            # The file's band number, as gdalinfo gives it: an alpha band (the mask, not
            # data) is not among ``available``, and the bands after one keep their numbers.
            if item not in available:
                raise InputError(f"{scene.path}: {_no_such_band(scene, item, available)}")
            out.append(item)
            continue
        index = names.get(canonical_band_name(item))
        if index is None:
            # An example among the file's own numbers: "3,2,1" named bands a 1-band file lacks.
            example = ",".join(str(n) for n in reversed(available[:3]))
            raise InputError(
                f"{scene.path}: no band is described as {item!r}; {known} "
                f"(select by 1-based index instead, e.g. --bands {example})"
            )
        out.append(index)
    return tuple(out)


def _no_such_band(scene: Scene, band: int, available: Sequence[int]) -> str:
    """Why ``band`` cannot be read: it does not exist, or it is the file's alpha band (a
    scene whose ``bands`` are set before any selection left its alpha band out)."""
    if not scene.bands:
        return f"band {band} does not exist; the raster has " + (
            f"bands 1-{len(available)}" if len(available) > 1 else "band 1 only"
        )
    listed = ", ".join(map(str, available))
    return f"band {band} is not a data band: those are {listed}, and the alpha band is the file's mask"


def select_bands(scene: Scene, wanted: str | Sequence[str | int]) -> Scene:
    """The same scene, reading only the ``wanted`` bands in the given order.

    Raises
    ------
    OptionError
        ``wanted`` has an empty entry (``B04,,B02``).
    InputError
        A band the scene does not have (:func:`band_indexes`), or a band wanted twice (``2,2``,
        or ``B03,3`` of the same band): it ran twice, and a Zarr output's band coordinate and
        a STAC Item's bands then named two bands alike.
    """
    items = parse_bands(wanted)
    indexes = band_indexes(scene, items)
    _refuse_repeats(scene, items, indexes)
    available = scene.bands or tuple(range(1, scene.count + 1))
    positions = [available.index(i) for i in indexes]

    def pick(values: tuple) -> tuple:
        return tuple(values[p] for p in positions) if values else ()

    return dataclasses.replace(
        scene,
        bands=indexes,
        count=len(indexes),
        descriptions=pick(scene.descriptions),
        colorinterp=pick(scene.colorinterp),
        band_tags=pick(scene.band_tags),
        band_imagery=pick(scene.band_imagery),
        scales=pick(scene.scales),
        offsets=pick(scene.offsets),
        units=pick(scene.units),
        # A Zarr output's band coordinate: the picked bands' labels, else their numbers in the file.
        band_labels=pick(scene.band_labels) if scene.band_labels else indexes,
        **(nodata_fields(pick(scene.band_nodata)) if scene.band_nodata else {}),
    )


def _refuse_repeats(scene: Scene, items: Sequence[str | int], indexes: Sequence[int]) -> None:
    """Refuse a selection whose ``items`` name one of the file's bands (``indexes``) twice."""
    for band in dict.fromkeys(indexes):
        named = [str(item) for item, index in zip(items, indexes, strict=True) if index == band]
        if len(named) > 1:
            raise InputError(
                f"{scene.path}: --bands selects band {band} {len(named)} times ({', '.join(named)}); "
                "give each band once"
            )


def reflectance_offset(scene: Scene, override: float | None = None) -> tuple[float, ...] | None:
    """The additive offset per band (``BOA_ADD_OFFSET``), or None when the scene has none.

    Looked up as :func:`band_offsets` says, in the scene's tags.  ``override`` (``--offset``)
    applies to every band.
    """
    if override is not None:
        if not math.isfinite(override):
            raise OptionError(f"--offset {override} is not a finite number; give the offset, e.g. -1000")
        return (float(override),) * scene.count
    return band_offsets(scene.path, scene.tags, scene.band_tags, scene.descriptions, scene.count)


def band_offsets(
    path: object,
    tags: Mapping[str, str],
    band_tags: Sequence[Mapping[str, str]],
    descriptions: Sequence[str | None],
    count: int,
) -> tuple[float, ...] | None:
    """The additive offset of each of ``count`` bands (``BOA_ADD_OFFSET``), or None when none has one.

    Looked up, per band, in the band's tags, then in dataset ``tags`` keyed by the band's
    name (``BOA_ADD_OFFSET_B04``), then in a dataset-wide tag.  ``band_tags`` and
    ``descriptions`` may be empty (none known); ``path`` names the raster in the error.
    """
    by_name: dict[str, str] = {}
    for key, text in tags.items():
        if key.upper().startswith(OFFSET_TAG + "_"):
            by_name[canonical_band_name(key[len(OFFSET_TAG) + 1 :])] = text
    dataset = tags.get(OFFSET_TAG)
    offsets: list[float] = []
    found = False
    for band in range(count):
        own = band_tags[band] if band_tags else {}
        description = descriptions[band] if descriptions else None
        value = own.get(OFFSET_TAG)
        if value is None and description:
            value = by_name.get(canonical_band_name(description))
        if value is None:
            value = dataset
        if value is not None:
            found = True
        try:
            offset = float(value) if value is not None else 0.0
        except ValueError:
            offset = math.nan
        if not math.isfinite(offset):  # "nan" and "inf" parse, but are no offset
            raise InputError(f"{path}: {OFFSET_TAG} {value!r} is not a number; pass --offset to override it")
        offsets.append(offset)
    return tuple(offsets) if found else None
