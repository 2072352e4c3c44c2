"""What a resume may trust: the journal's finished tiles, checked against the run's store on disk.

The journal lists a tile once its chunks were renamed into place, but nothing
is synced (:mod:`geosr.io.runstate`): after a machine restart a listed chunk may
be empty or missing, and a failing disk or another program can damage one at any
time.  :func:`tiles_to_trust` checks them when a run resumes, and
:func:`damaged_store_error` tells a damaged store from a failing output when the
COG build fails; either way the journal keeps only the whole tiles, which
``--resume`` then does not compute again.
"""

from __future__ import annotations

from geosr.errors import OutputError, ResumableError, warn
from geosr.io.run_store import tiles_on_disk
from geosr.io.runstate import RunState, StaleRunError
from geosr.tiling import TilePlan


def tiles_to_trust(state: RunState, plan: TilePlan, scale: int, journaled: set[int]) -> set[int]:
    """The journaled tiles whose chunks are all in the run's store and whole; the journal keeps only those.

    Checked on every resume (a stat per chunk, a header read for a compressed
    one): after a machine restart the journal may list tiles whose chunks never
    reached the disk, and a chunk damaged or removed since it was written would
    otherwise fail the COG build, or become nodata without a word.  A Zarr
    output's store is checked after a restart only.
    """
    restarted = state.restarted()
    if not restarted and state.destination.suffix.lower() == ".zarr":
        return journaled  # it leaves out all-nodata chunks: a missing one is no sign of damage
    try:
        kept = tiles_on_disk(state.store, _output_windows(plan, scale, journaled), state.destination)
    except Exception as exc:  # zarr raises many kinds for a store whose metadata is gone
        raise StaleRunError(
            f"{state.destination}: the unfinished run kept in {state.directory} has a damaged "
            f"store ({type(exc).__name__}: {exc}); pass --restart to discard it and start over",
            resumable=False,
        ) from None
    if kept != journaled:
        lost = len(journaled - kept)
        why = (
            "did not reach the disk before the machine restarted"
            if restarted
            else f"{'is' if lost == 1 else 'are'} missing or damaged in {state.store}"
        )
        warn(
            f"{state.destination}: {lost} of the {len(journaled)} finished tiles "
            f"kept for this run {why}; computing them again"
        )
    if restarted or kept != journaled:
        state.keep_only(kept)
    return kept


def _output_windows(plan: TilePlan, scale: int, tiles: set[int]) -> dict[int, tuple[slice, slice]]:
    """Tile index -> the output rows and columns of its core."""
    windows = {}
    for i in tiles:
        window = plan.tiles[i].core.scaled(scale)
        windows[i] = (window.rows, window.cols)
    return windows


def damaged_store_error(
    state: RunState, plan: TilePlan, scale: int, failure: OutputError
) -> ResumableError | None:
    """After the COG build failed: when tiles of the store are damaged on disk, the
    error that says so (the journal then keeps only the whole ones, for --resume);
    None when the store is whole and the failure is the output's own."""
    everything = set(range(len(plan)))
    try:
        whole = tiles_on_disk(state.store, _output_windows(plan, scale, everything), state.destination)
    except Exception:  # the store itself is gone or unreadable: the failure's own line says enough
        return None
    if whole == everything:
        return None
    state.keep_only(whole)
    reason = str(failure).partition(": ")[2].partition("; ")[0]
    damaged = len(everything - whole)
    return ResumableError(
        f"cannot finish {state.destination}: {damaged} of the {len(plan)} tiles in this run's "
        f"store {state.store} {'is' if damaged == 1 else 'are'} damaged on disk ({reason}); "
        "rerun with --resume to compute them again, or check the disk if this happens again"
    )
