"""What a run reads: the input scene shaped by the options (nodata, bands, area of interest),
its ``--frame`` acquisitions, and the scene-global normalisation sampled from it.

All of it needs the raster's header and a decimated sample, never torch: a bad input is
told before the model loads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask

from geosr.aoi import AoiMask, aoi_mask, aoi_window, crop_scene, whole_file
from geosr.areas import parse_bbox, read_vector
from geosr.errors import InputError, OptionError, in_context, warn
from geosr.grid import scaled
from geosr.io.bands import reflectance_offset, select_bands
from geosr.io.frames import check_frame
from geosr.io.remote import is_remote
from geosr.io.scene import Scene, fill_value, open_scene, read_sample, sample_step, with_nodata
from geosr.io.sink import NODATA_GIVEN, check_nodata_of
from geosr.io.stac_input import is_stac_item, not_an_item, with_declared_nodata, with_declared_scaling
from geosr.io.stac_input import resolve as resolve_stac
from geosr.normalise import (
    FILL_RADIUS,
    FLOAT_FILL,
    Normalisation,
    dtype_divisor,
    normalisation_from_card,
    scene_normalisation,
    units_dtype,
    valid_mask,
    warn_empty_bands,
)
from geosr.options import RunOptions

if TYPE_CHECKING:  # it imports torch, which loads with the model
    from geosr.models import SRModel


def scene_for(src: str | Path, options: RunOptions) -> Scene:
    """Open ``src`` and apply the options that shape it: nodata, bands, area of interest.

    A STAC Item is resolved to its raster asset(s) first (:mod:`geosr.io.stac_input`).
    """
    if options.asset is not None and not is_stac_item(src) and not_an_item(src) is None:
        raise OptionError(f"{src}: --asset is for STAC Item inputs (.json); this input is a raster")
    scene = open_input(src, options, variable=options.variable)
    scene = with_nodata(scene, options.nodata)
    # Here, naming the file, rather than when the output is set up: among several
    # inputs that line did not say which one (and geosr info never said it).
    remedy = (
        NODATA_GIVEN if options.nodata is not None else "it is the file's: give --nodata {values} instead"
    )
    # The --nodata given, not the scene's float of it: its line shows it as typed (300, not 300.0).
    given = options.nodata if options.nodata is not None else scene.nodata
    check_nodata_of(scene.path, given, scene.dtype, remedy)
    if options.bands:
        scene = select_bands(scene, options.bands)
    area = area_of_interest(options)
    if area is not None:
        scene = crop_scene(scene, aoi_window(scene.grid, area, scene.path, options.aoi))
    return scene


def open_input(src: str | Path, options: RunOptions, *, variable: str | None = None) -> Scene:
    """The raster at ``src``, or the one a STAC Item names (its ``--asset``, or its
    ``--bands`` assets stacked), for the input and each ``--frame`` alike."""
    problem = not_an_item(src)
    if problem is not None:
        raise problem
    if not is_stac_item(src):
        return open_scene(src, variable=variable, bands=options.bands)
    item = resolve_stac(src, asset=options.asset, bands=options.bands)
    try:
        scene = open_scene(item.href, variable=variable)
    except InputError as exc:  # the asset's path alone did not say where it came from
        raise in_context(src, exc) from None
    # The Item's raster:bands nodata, scale and offset, for a file that declares none.
    scene = with_declared_scaling(with_declared_nodata(scene, item.nodata), item.scaling)
    if item.stacked:
        # The stack is a temporary VRT, new in every run: the Item stands for it in
        # messages, provenance and the job's fingerprint (so that --resume finds the run).
        scene = dataclasses.replace(scene, path=str(src), subdataset=item.href, stamp=None)
    if item.when:
        scene = dataclasses.replace(scene, tags={**scene.tags, **item.when})
    return scene


def area_of_interest(options: RunOptions) -> Any:
    """The ``--aoi`` or ``--bbox`` geometry (odc-geo, with its CRS), or None."""
    if options.aoi is not None:
        return read_vector(options.aoi)
    if options.bbox is not None:
        return parse_bbox(options.bbox, options.bbox_crs)
    return None


def output_mask(scene: Scene, options: RunOptions) -> AoiMask | None:
    """The ``--aoi`` polygon's mask on the output grid of ``scene`` (cropped by :func:`scene_for`),
    or None: a ``--bbox`` asks for the window that covers it, and masks nothing.

    ``geosr run`` and ``geosr info`` both take it from here: the tiles the run reads and
    the nodata value its output declares depend on it.
    """
    if options.aoi is None:
        return None
    out_grid = scaled(scene.grid, options.scale)
    return aoi_mask(
        read_vector(options.aoi), out_grid, fill_value(scene.dtype, scene.output_nodata), scene.path
    )


def reference_sample(scene: Scene) -> np.ndarray:
    """The strided sample of ``scene``'s whole file that fixes the run's normalisation
    (:func:`normalisation_for`) and that a ``--frame``'s units are checked against; a remote
    input's area of interest alone (the whole file would be downloaded).  It touches every
    block of the file: a run reads it once and gives it to both."""
    return read_sample(sampled_for_reference(scene))


def sampled_for_reference(scene: Scene) -> Scene:
    """The scene :func:`reference_sample` reads: ``scene``'s whole file, or ``scene`` itself
    (the same object) where it is no window of one or a remote input's."""
    return scene if is_remote(scene.path) else whole_file(scene)


def sampled_inside(
    mask: AoiMask, scene: Scene, shape: tuple[int, ...], step: int, first: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Which pixels of a strided sample of ``scene`` have their centre in ``mask``'s polygon:
    the sample's pixel (i, j), of ``shape``, is the scene's (first[0] + i * step, first[1] + j * step)."""
    # Its centre, not its block's: step / 2 back from the block's, half a pixel into the scene's.
    shift = 0.5 - step / 2
    transform = (
        scene.grid.affine @ Affine.translation(first[1] + shift, first[0] + shift) @ Affine.scale(step)
    )
    return ~geometry_mask([mask.geometry], out_shape=shape, transform=transform)


def _valid_inside(
    sample: np.ndarray, scene: Scene, mask: AoiMask | None, step: int, first: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """The pixels of the strided ``sample`` of ``scene`` valid in some band, inside ``mask``'s
    polygon where there is one (:func:`sampled_inside`), flattened."""
    valid = np.asarray(valid_mask(sample, scene.nodata).any(axis=0))
    return valid.ravel() if mask is None else valid[sampled_inside(mask, scene, valid.shape, step, first)]


def area_has_data(
    scene: Scene, mask: AoiMask | None, reference: np.ndarray, window_sample: np.ndarray | None = None
) -> bool:
    """Whether the area of interest ``scene`` (a window of its file: :func:`scene_for`) holds a
    valid pixel, inside ``mask``'s ``--aoi`` polygon where there is one, as the strided samples
    see it: the whole file's ``reference`` (:func:`reference_sample`), which the run has read,
    and only where that sees none there (its stride can step over a small area) the window's
    own (``window_sample``; read here where None), as :func:`normalisation_for` sees the file."""
    whole = sampled_for_reference(scene)
    if whole is not scene:
        step = sample_step(*whole.grid.shape.yx)
        (r0, c0), (h, w) = scene.origin, scene.grid.shape.yx
        # The reference's pixels are the file's rows and columns that are multiples of step.
        rows = slice(-(-r0 // step), -(-(r0 + h) // step))
        cols = slice(-(-c0 // step), -(-(c0 + w) // step))
        first = (rows.start * step - r0, cols.start * step - c0)
        if _valid_inside(reference[:, rows, cols], scene, mask, step, first).any():
            return True
        sample = read_sample(scene) if window_sample is None else window_sample
    else:  # a remote input's reference is the window's own sample
        sample = reference
    return bool(_valid_inside(sample, scene, mask, sample_step(*scene.grid.shape.yx)).any())


def check_area_has_data(
    scene: Scene, options: RunOptions, mask: AoiMask | None, reference: np.ndarray
) -> None:
    """Refuse an ``--aoi`` or ``--bbox`` where the scene holds no valid pixel (:func:`area_has_data`),
    as :func:`normalisation_for` refuses a file without one: its output would be all nodata.

    Raises
    ------
    InputError
        Naming the file and the area, and how to fix it.
    """
    if (options.aoi is None and options.bbox is None) or area_has_data(scene, mask, reference):
        return
    area = f"--aoi '{options.aoi}'" if options.aoi is not None else f"--bbox '{options.bbox}'"
    raise InputError(
        f"{scene.path}: the area of interest ({area}) holds no valid pixel (everything there is "
        f"nodata), so its output would be all nodata; {EMPTY_AREA_REMEDY}"
    )


EMPTY_AREA_REMEDY = (
    "give an area where the scene has data, or check the nodata value and mask (gdalinfo), or pass --nodata"
)
"""How to fix an area of interest without a valid pixel, which geosr run refuses and geosr info tells."""


def frames_for(scene: Scene, options: RunOptions, sample: np.ndarray | None = None) -> tuple[Scene, ...]:
    """The ``--frame`` scenes, with the reference's band selection, checked against it;
    ``sample`` is the reference's :func:`reference_sample` when the caller has it."""
    frames = []
    seen = [str(scene.path)]
    for path in options.frames:
        earlier = next((s for s in seen if _same_file(s, str(path))), None)
        if earlier is not None:
            what = "the input itself" if earlier == seen[0] else "given twice"
            raise OptionError(
                f"--frame {path} is {what}: it would be fused as another acquisition; "
                "give each other acquisition of the scene once"
            )
        seen.append(str(path))
        # A frame may be a STAC Item as the input may: GDAL's STACIT driver read one
        # that carries projection fields without --asset/--bands, and refused any other.
        try:
            frame = open_input(path, options)
        except InputError as exc:
            # 'd2.tif: no such file or directory' did not say it was a --frame, not the input.
            said = str(exc)
            raise type(exc)(
                f"--frame {said}" if said.startswith(str(path)) else f"--frame {path}: {said}"
            ) from None
        frame = with_nodata(frame, options.nodata)
        if options.bands:
            frame = select_bands(frame, options.bands)
        frames.append(check_frame(frame, scene))
    if frames and not is_remote(scene.path):
        reference = value_magnitudes(reference_sample(scene) if sample is None else sample, scene.nodata)
        frames = [frame for frame in frames if frame_is_usable(frame, scene, reference)]
    return tuple(frames)


UNITS_RATIO = 20.0
"""How many times larger (or smaller) than the reference's a frame's values must be, in every band,
to be refused as another unit: a cloudy date of a dark scene stays well within it, 8-bit against
16-bit DN (x256) or DN against reflectance (x10000) do not."""


def value_magnitudes(sample: np.ndarray, nodata: float | None) -> np.ndarray:
    """Per band, the 99th percentile of the absolute valid values of a strided ``sample``
    (NaN for a band without one)."""
    sample = sample.astype(np.float64)
    valid = valid_mask(sample, nodata)
    out = np.full(sample.shape[0], np.nan)
    for band, (values, ok) in enumerate(zip(sample, valid, strict=True)):
        if ok.any():
            out[band] = np.percentile(np.abs(values[ok]), 99)
    return out


def frame_is_usable(frame: Scene, scene: Scene, reference: np.ndarray) -> bool:
    """Whether ``frame`` has valid pixels (else it is left out, with a warning), and refuse it
    when its values are not in the reference's units (a float reflectance frame beside a DN
    reference, a 16-bit frame beside an 8-bit one).

    A frame without a valid pixel (all clouds masked, the wrong nodata) was fused nowhere,
    yet the output's ``GEOSR_FRAMES`` tag and STAC links named it, and nothing said so.

    Frames are normalised with the reference's normalisation, so such a frame went into the
    recurrent model tens to thousands of times too bright or dark, and nothing said so: with an
    8-bit reference, a frame of the same pixels x100 moved the output by 17 DN on average (198 at
    most) against 1 DN for a frame in its units.  A remote frame is not sampled (that reads it all).
    """
    if is_remote(frame.path):
        return True
    own = value_magnitudes(read_sample(whole_file(frame)), frame.nodata)
    if np.isnan(own).all():
        warn(
            f"{frame.path}: the frame has no valid pixel (everything is nodata, masked or NaN), so it "
            "is left out of the run; check its nodata value (gdalinfo)"
        )
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = own / reference
    compared = np.isfinite(ratio) & (ratio > 0)
    if not compared.any():
        return True
    ratio = ratio[compared]
    if (ratio > UNITS_RATIO).all() or (ratio < 1 / UNITS_RATIO).all():
        raise InputError(
            f"{frame.path}: the frame's values are about {np.median(ratio):.3g} times the reference "
            f"{scene.path}'s (99th percentile of band 1: {own[compared][0]:.4g} against "
            f"{reference[compared][0]:.4g}); frames must be in the reference's units (the same product "
            "and scaling: DN or reflectance, 8 or 16 bits); rescale the frame"
        )
    return True


def frames_read(src: str | Path, net: SRModel, frames: tuple[Scene, ...]) -> tuple[Scene, ...]:
    """The ``--frame`` scenes the model ``net`` reads: none, with a warning, for a model that
    reads the reference alone (``geosr run`` and ``geosr info`` alike)."""
    if frames and not net.fuses_frames:
        # 'the 1 frame file(s) given (--frame) are not used' read as a form, not a sentence.
        unused = (
            "frame file given (--frame) is"
            if len(frames) == 1
            else f"{len(frames)} frame files given (--frame) are"
        )
        warn(
            f"{src}: model {net.name} reads the reference alone, so the {unused} not used; "
            "a CNN-RNN model (the default) fuses them"
        )
        return ()
    return frames


def run_halo(net: SRModel, frames: int) -> int:
    """The tiles' halo for ``frames`` acquisitions: every frame deepens the recurrence."""
    return (net.receptive_radius(frames) if frames > 1 else net.receptive_field) + FILL_RADIUS


def _same_file(a: str, b: str) -> bool:
    """Whether two inputs name one file (also through another spelling or a link)."""
    try:
        return Path(a).samefile(b)
    except (OSError, ValueError):  # a URL, or a path that is not there
        return a == b


def frame_shifts(
    frames: tuple[Scene, ...], reference: tuple[float, ...] | None, override: float | None
) -> tuple[tuple[float, ...] | None, ...]:
    """What to add to each frame's bands to express it in the reference's DN convention.

    A Sentinel-2 L2A product of baseline 04.00 or later stores ``10000 x reflectance
    - BOA_ADD_OFFSET`` (offset -1000), an older one ``10000 x reflectance``: in a
    stack across January 2022, the same ground differs by 1000 DN between frames,
    which the recurrent model would take for a change.  ``--offset`` (``override``)
    applies to every file alike, so it shifts nothing.
    """
    ref = reference or ()
    shifts: list[tuple[float, ...] | None] = []
    for frame in frames:
        own = reflectance_offset(frame, override) or ()
        shift = tuple((own[b] if own else 0.0) - (ref[b] if ref else 0.0) for b in range(frame.count))
        shifts.append(shift if any(shift) else None)
    return tuple(shifts)


UNDECLARED_ZEROS = 0.01
"""Share of a scene's sample, 0 in every band, above which a scene without nodata is warned about."""


UNDECLARED_ZEROS_REMEDY = "pass --nodata 0"
"""What :func:`warn_undeclared_zeros` tells the user to do, by default."""


def warn_undeclared_zeros(
    scene: Scene, sample: np.ndarray, remedy: str = UNDECLARED_ZEROS_REMEDY, use: str = "super-resolved"
) -> None:
    """Warn, in one line, when an unsigned scene declares no nodata but is 0 in every band
    on a sizeable share of its pixels (``UNDECLARED_ZEROS`` of ``sample``); ``remedy`` says
    how to declare it, for a command that takes no ``--nodata``, and ``use`` what becomes
    of those pixels (a reference's are "scored").

    Sentinel-2 L1C JP2 files leave their 0 outside the swath undeclared: run as data, the
    edge of that area was sharpened like any other (a T33UUU crop at x4 gave 4517 output
    pixels of 0 inside the valid area and a dark ring along it), with no word of it.  A
    Landsat scene's fill around its footprint is the same.  Signed types are left out: 0 is
    mid-range there, a valid value.
    """
    if scene.nodata is not None or scene.nan_marks_invalid or np.dtype(scene.dtype).kind != "u":
        return
    warn_zeros_as_data(str(scene.path), sample, remedy, use)


def warn_zeros_as_data(
    source: str, sample: np.ndarray, remedy: str = UNDECLARED_ZEROS_REMEDY, use: str = "super-resolved"
) -> None:
    """:func:`warn_undeclared_zeros`'s line for ``source`` (a file, or ``geosr.upscale``'s DataArray),
    whose ``sample`` its caller knows to be unsigned pixels with no nodata declared."""
    share = float((sample == 0).all(axis=0).mean()) if sample.size else 0.0
    if share >= UNDECLARED_ZEROS:
        warn(
            f"{source}: {100 * share:.3g} % of its pixels are 0 in every band and it declares "
            f"no nodata, so they are {use} as data; {remedy} if they are not "
            "(as outside a Sentinel-2 L1C swath)"
        )


def warn_float_fill(
    scene: Scene,
    sample: np.ndarray,
    fate: str = "written as nodata, not super-resolved",
    remedy: str = "pass --nodata {value} to declare it",
    sampled: bool = True,
) -> None:
    """Warn, in one line, when pixels of a float scene's ``sample`` hold a fill value
    (:data:`~geosr.normalise.FLOAT_FILL` or more in magnitude) that the scene does not declare as
    its nodata, naming the commonest one and the ``--nodata`` that declares it; ``fate`` says
    what becomes of them, and ``remedy`` (``{value}`` in it the value) how to declare it, for a
    command that takes its nodata otherwise (training's source).  ``sampled`` False: ``sample``
    is every pixel the caller uses (training's), not a sample of them (the run's).

    Such pixels are nodata whatever the scene declares (:func:`~geosr.normalise.valid_mask`):
    run as data, each overflowed the model's float32 input and blanked the output around it,
    and numpy's bare 'overflow encountered in cast' was the only word.
    """
    if np.dtype(scene.dtype).kind == "f":
        warn_float_fill_of(str(scene.path), sample, scene.nodata, fate, remedy, sampled)


def warn_empty_bands_of(scene: Scene, sample: np.ndarray, card_normalisation: dict[str, Any]) -> None:
    """The line :func:`normalisation_for` gives of the bands of ``scene`` without a valid pixel in
    its ``sample`` (:func:`~geosr.normalise.warn_empty_bands`), for a model of
    ``card_normalisation``: ``geosr info`` computes its normalisation with its warnings hidden,
    and said nothing of a cube's cloudy dates ('valid pixels 100 %') that the run warns of."""
    if normalisation_from_card(card_normalisation)["method"] == "percentile":
        valid = valid_mask(sample, scene.nodata)
        warn_empty_bands(valid, str(scene.path), scene.band_axis, scene.band_labels)


def warn_float_fill_of(
    source: str, sample: np.ndarray, nodata: float | None, fate: str, remedy: str, sampled: bool = True
) -> None:
    """:func:`warn_float_fill`'s line for ``source``, whose float ``sample`` its caller has read
    (a training pair's raster, read with its nodata as NaN: ``nodata`` None).

    The line says 'of its N pixels sampled' for a sample, 'of the N pixels read' where
    ``sampled`` is False: training reads every pixel it trains on (of a part of the file, for
    a validation split or a warp's window), and was said to have sampled them."""
    with np.errstate(invalid="ignore"):
        fill = np.isfinite(sample) & (np.abs(sample) >= FLOAT_FILL)
    if nodata is not None and not np.isnan(nodata):
        fill &= sample != nodata
    if not fill.any():
        return
    values, counts = np.unique(sample[fill], return_counts=True)
    value = float(values[np.argmax(counts)])
    counted = f"of its {sample.size} pixels sampled" if sampled else f"of the {sample.size} pixels read"
    warn(
        f"{source}: {int(fill.sum())} {counted} hold {value!r}, a float "
        f"fill value ({FLOAT_FILL:g} or more in magnitude) not declared as its nodata: they are {fate}; "
        + remedy.format(value=repr(value))
    )


def check_normalisable(scene: Scene, card_normalisation: dict[str, Any]) -> None:
    """Refuse ``scene``, in the line its run would (:func:`~geosr.normalise.dtype_divisor`), where
    the card's ``dtype-range`` normalisation has no divisor for its dtype: for ``geosr info``,
    which plans the run without normalising."""
    kwargs = normalisation_from_card(card_normalisation)
    if kwargs["method"] == "dtype-range":
        dtype_divisor(units_dtype(scene.dtype, scene.tags), kwargs["divisors"], str(scene.path))


def normalisation_for(
    scene: Scene,
    card_normalisation: dict[str, Any],
    add_offset: tuple[float, ...] | None = None,
    sample: np.ndarray | None = None,
) -> Normalisation:
    """Scene-global normalisation from a decimated read of the whole file, also for an
    area of interest (so that its output equals the same window of a full run, and the
    outputs of neighbouring areas match); refuses all-nodata scenes.

    A remote input's area of interest is the exception: its window alone is sampled,
    since sampling the whole file would download all of it (a 1 GB scene for a field).

    ``add_offset`` (Sentinel-2 ``BOA_ADD_OFFSET``, per band) turns the stored
    numbers into physical units for models that expect them (``dtype-range``:
    ``(DN + offset) / 10000``); percentile normalisation is unaffected by an
    additive offset by construction.  ``sample`` is the scene's :func:`reference_sample`
    when the caller has read it already.
    """
    sample = reference_sample(scene) if sample is None else sample
    valid = valid_mask(sample, scene.nodata)
    if not valid.any():
        values = scene.band_nodata or (scene.nodata, *scene.missing_values)
        hidden = f"nodata (nodata={', '.join(map(str, values))})" + (" or masked" if scene.masked else "")
        raise InputError(
            f"{scene.path}: every pixel is {hidden}; nothing to super-resolve. "
            "Check the nodata value and mask (gdalinfo) or pass --nodata to override the value"
        )
    warn_undeclared_zeros(scene, sample)
    warn_float_fill(scene, sample)
    norm = scene_normalisation(
        sample,
        valid,
        dtype=units_dtype(scene.dtype, scene.tags),
        source=scene.path,
        band_axis=scene.band_axis,
        band_labels=scene.band_labels,
        **normalisation_from_card(card_normalisation),
    )
    return norm.with_add_offset(add_offset)
