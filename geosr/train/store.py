"""Paired training chips: the per-pair kernel and the Zarr training-store layout.

Layout of a store (Zarr v3)::

    store.zarr/
      pairs/<k>/lr   (N_k, h, w)  float32   normalised LR chips
      pairs/<k>/hr   (N_k, H, W)  float32   co-registered, histogram-matched HR chips
      pairs/<k>/split (N_k,)      uint8     0 = train, 1 = validation
      attrs: scale, lr_chip, pairs (list of {lr, hr, shift}), complete

Each pair is written by one task into its own group, so tasks never write to
the same array; ``geosr.orchestrate.training_store`` runs those tasks in
parallel with Dask and sets ``complete`` last.

Normalisation: both chips of a pair are normalised with the LR scene's
percentile normalisation (the one ``geosr run`` will compute on an LR input);
the HR is in LR units after histogram matching.  Validation chips are the ones
in the bottom ``val_fraction`` of the LR rows (a spatial split, no overlap), or,
where those rows hold no valid chip, the last row of chips that does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from geosr.errors import InputError, OptionError
from geosr.normalise import scene_normalisation
from geosr.train.coreg import coregister


def pair_chips(
    lr_path: str,
    hr_path: str,
    *,
    scale: int,
    lr_chip: int,
    stride: int | None = None,
    val_fraction: float = 0.2,
    lr_bands: tuple[int, ...] | None = None,
    hr_bands: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """Co-register one pair and cut it into all-valid single-band chips.

    Returns
    -------
    lr : (N, lr_chip, lr_chip) float32
    hr : (N, lr_chip * scale, lr_chip * scale) float32
    split : (N,) uint8, 1 for validation chips
    shift : the residual shift removed, HR pixels
    """
    pair = coregister(lr_path, hr_path, scale, lr_bands=lr_bands, hr_bands=hr_bands)
    valid = np.isfinite(pair.lr)
    norm = scene_normalisation(np.nan_to_num(pair.lr), valid, method="percentile", source=str(lr_path))
    lr = norm.apply(np.nan_to_num(pair.lr))
    hr = norm.apply(np.nan_to_num(pair.hr))
    lr_ok = valid
    hr_ok = np.isfinite(pair.hr)
    stride = stride or lr_chip
    c, h, w = lr.shape
    big = lr_chip * scale
    chips = [
        (band, y, x)
        for band in range(c)
        for y in range(0, h - lr_chip + 1, stride)
        for x in range(0, w - lr_chip + 1, stride)
        if lr_ok[band, y : y + lr_chip, x : x + lr_chip].all()
        and hr_ok[band, y * scale : y * scale + big, x * scale : x * scale + big].all()
    ]
    boundary = round(h * (1.0 - val_fraction))
    if chips and max(y for _, y, _ in chips) < boundary:
        # The bottom rows hold no valid chip (nodata there: a swath edge, an HR covering the
        # top of the LR): the last row of chips with data validates instead. Else a pair
        # alone gave 'has no val chip: use larger rasters', whatever its size.
        boundary = max(y for _, y, _ in chips)
    lrs, hrs, splits = [], [], []
    for band, y, x in chips:
        if y < boundary < y + lr_chip:
            continue
        ys, xs = y * scale, x * scale
        lrs.append(lr[band, y : y + lr_chip, x : x + lr_chip])
        hrs.append(hr[band, ys : ys + big, xs : xs + big])
        splits.append(1 if y >= boundary else 0)
    if not lrs:
        return (
            np.zeros((0, lr_chip, lr_chip), np.float32),
            np.zeros((0, big, big), np.float32),
            np.zeros(0, np.uint8),
            pair.shift,
        )
    return np.stack(lrs), np.stack(hrs), np.array(splits, np.uint8), pair.shift


def write_pair(store: str | Path, key: int, lr: np.ndarray, hr: np.ndarray, split: np.ndarray) -> int:
    """Write one pair's chips into ``pairs/<key>`` of an existing store; returns the chip count."""
    root = zarr.open_group(str(store), mode="r+")
    group = root.require_group(f"pairs/{key}")
    n = lr.shape[0]
    for name, arr in (("lr", lr), ("hr", hr), ("split", split)):
        chunks = (max(1, min(n, 64)), *arr.shape[1:]) if n else (1, *arr.shape[1:])
        z = group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks, overwrite=True)
        if n:
            z[...] = arr
    return n


def init_store(store: str | Path, *, scale: int, lr_chip: int, pairs: list[dict[str, Any]]) -> None:
    """Create (or reset) an empty store with its attributes, ``complete = False``."""
    root = zarr.open_group(str(store), mode="w")
    root.attrs.update({"scale": scale, "lr_chip": lr_chip, "pairs": pairs, "complete": False})


def finish_store(store: str | Path, shifts: list[tuple[float, float]], counts: list[int]) -> None:
    """Record per-pair shifts and chip counts and mark the store complete."""
    root = zarr.open_group(str(store), mode="r+")
    pairs: list[dict[str, Any]] = json.loads(json.dumps(root.attrs["pairs"]))
    for p, shift, n in zip(pairs, shifts, counts, strict=True):
        p["shift"] = [float(shift[0]), float(shift[1])]
        p["chips"] = int(n)
    root.attrs.update({"pairs": json.loads(json.dumps(pairs)), "complete": True})


def built_pairs(store: str | Path, *, scale: int, lr_chip: int) -> list[tuple[Path, Path]] | None:
    """The (LR, HR) pairs, as absolute paths, a complete ``store`` at this scale and chip size
    was built from; None for a store that is not one (missing, incomplete, other chips)."""
    try:
        attrs = zarr.open_group(str(store), mode="r").attrs
    except (ValueError, OSError, KeyError):
        return None
    if not attrs.get("complete") or (attrs.get("scale"), attrs.get("lr_chip")) != (scale, lr_chip):
        return None
    pairs: list[dict[str, Any]] = json.loads(json.dumps(attrs.get("pairs", [])))
    return [(Path(p["lr"]).absolute(), Path(p["hr"]).absolute()) for p in pairs]


def _open_store(store: str | Path) -> zarr.Group:
    p = Path(store)
    if not p.exists():
        raise InputError(f"training store {p} does not exist; build it with geosr train --lr/--hr")
    try:
        return zarr.open_group(str(p), mode="r")
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{p} is not a training store ({exc}); build one with geosr train --lr/--hr --store"
        ) from None


def check_store(store: str | Path, *, scale: int, lr_chip: int) -> None:
    """Refuse a run whose scale or LR chip size is not the store's.

    The chips were cut once, at the store's scale and size: another scale
    cannot be trained on them, and another chip size would only be recorded
    (in the model card) without being used.
    """
    attrs = _open_store(store).attrs
    built_scale, built_chip = attrs.get("scale"), attrs.get("lr_chip")
    if built_scale is not None and built_scale != scale:
        raise OptionError(
            f"training store {store} holds x{built_scale} chips, the run is x{scale}: use "
            f"-s {built_scale}, or rebuild the store at x{scale} from --lr/--hr (another --store path)"
        )
    if built_chip is not None and built_chip != lr_chip:
        raise OptionError(
            f"training store {store} holds {built_chip}-px LR chips, the run asks for {lr_chip}: use "
            f"--chip {built_chip}, or rebuild the store with --chip {lr_chip} from --lr/--hr"
        )


def read_store(store: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """All chips of one split: ``lr`` (N, h, w) and ``hr`` (N, H, W) float32."""
    p = Path(store)
    root = _open_store(p)
    if not root.attrs.get("complete"):
        raise InputError(f"training store {p} is incomplete (interrupted build?): build it again")
    want = 1 if split == "val" else 0
    lrs, hrs = [], []
    for key in sorted(root["pairs"].group_keys(), key=int):  # type: ignore[union-attr]
        g = root[f"pairs/{key}"]
        arrays: Any = g
        sel = np.asarray(arrays["split"][...]) == want
        if sel.any():
            lrs.append(np.asarray(arrays["lr"][...])[sel])
            hrs.append(np.asarray(arrays["hr"][...])[sel])
    if not lrs:
        raise InputError(f"training store {p} has no {split} chip: use larger rasters or a smaller chip")
    return np.concatenate(lrs).astype(np.float32), np.concatenate(hrs).astype(np.float32)


def store_info(store: str | Path) -> dict[str, Any]:
    """The store's attributes (scale, chip size, pairs with their shifts and counts)."""
    return dict(zarr.open_group(str(store), mode="r").attrs)
