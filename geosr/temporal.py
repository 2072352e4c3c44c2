"""Stacking T acquisitions of a tile for the recurrent model, frame by frame, tile by tile.

Frame 0 is the reference: the output lies on its grid and reproduces its
radiometry.  Every other frame is normalised with the reference's (scene-global)
normalisation, so that all frames share one value range.  A frame is dropped
*for a tile* when less than :data:`MIN_VALID` of that tile's read window is
valid in it (outside its footprint, nodata, NaN): a frame that does not cover
a tile never poisons it.  Its remaining invalid pixels take the reference's
values, so the recurrent cell sees no fill values either.  Tiles therefore
carry between 1 and T frames; :func:`group_by_frames` batches tiles of equal T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from geosr.kernel import normalise_valid, prepare_tiles
from geosr.normalise import Normalisation, valid_mask

MIN_VALID = 0.5
"""Fraction of a tile's read window a frame must cover with valid pixels to be used there."""


def stack_frames(
    raw: np.ndarray,
    nodata: float | None,
    norm: Normalisation,
    *,
    min_valid: float = MIN_VALID,
    sources: Sequence[str] = (),
) -> tuple[list[np.ndarray], np.ndarray]:
    """Model inputs per tile from ``raw`` frames.

    Parameters
    ----------
    raw : ndarray, shape (B, T, C, h, w)
        Frame 0 is the reference, as read; the others on the reference's grid.
    nodata : float or None
        Nodata value of the frames (NaN is always invalid).
    norm : Normalisation
        The reference scene's.
    min_valid : float, default :data:`MIN_VALID`
        Fraction of a tile's read window a frame other than the reference must cover with
        valid pixels to be stacked for that tile; one below it is left out of that tile.
    sources : sequence of str
        What each frame is read from (the reference first), which a line on a value beyond
        float32 names (:func:`~geosr.kernel.normalise_valid`); 'the input' where not given.

    Returns
    -------
    inputs : list of ndarray, float32, each (T_i, C, h, w)
        Per tile, the reference followed by the frames that cover it.
    valid : ndarray of bool, shape (B, C, h, w)
        Validity of the reference pixels (decides the output's nodata).
    """
    names = [*sources, *["the input"] * (raw.shape[1] - len(sources))]
    x_ref, valid = prepare_tiles(raw[:, 0], nodata, norm, names[0])
    inputs = []
    for i in range(raw.shape[0]):
        frames = [x_ref[i, 0]]
        for t in range(1, raw.shape[1]):
            frame = raw[i, t]
            ok = valid_mask(frame, nodata)
            if ok.mean() < min_valid:
                continue
            x, ok = normalise_valid(frame, ok, norm, names[t], "not fused, the reference's taken there")
            frames.append(np.where(ok, x, x_ref[i, 0]).astype(np.float32, copy=False))
        inputs.append(np.stack(frames))
    return inputs, valid


def predict_grouped(
    inputs: list[np.ndarray], predict: Callable[[np.ndarray], Sequence[np.ndarray]]
) -> list[np.ndarray]:
    """Run ``predict`` once per group of tiles with the same frame count; results in input order."""
    out: list[np.ndarray | None] = [None] * len(inputs)
    for frames, members in group_by_frames(inputs).items():
        del frames
        result = predict(np.stack([inputs[i] for i in members]))
        for i, sr in zip(members, result, strict=True):
            out[i] = sr
    return [o for o in out if o is not None]


def group_by_frames(inputs: list[np.ndarray]) -> dict[int, list[int]]:
    """Tile positions by frame count."""
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(x.shape[0], []).append(i)
    return groups
