"""How many model calls a run's lanes compute at once, as the pipeline sees it now.

The pipeline (:func:`geosr.pipeline.run_tiles`) hands batches to lanes; each lane's model
calls take a share of torch's threads (:func:`geosr.predictor.shared_threads`).  A share
taken from the calls already in flight missed the one about to start: the first lane's first
call, a few milliseconds ahead of the second, took every thread.  The pipeline knows what
is coming (batches it has not handed out yet), so it says how many calls to share with; the
predictor asks before each model call of a batch, so that a lane whose peer has finished,
with no batch left for it, takes every thread for the rest of its batch.  A context variable,
so that neither imports the other and a call outside a run (the Python API on an array)
shares with nobody.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable


def alone() -> int:
    """The calls expected at once outside a run: this one."""
    return 1


PEERS: contextvars.ContextVar[Callable[[], int]] = contextvars.ContextVar("geosr_lane_peers", default=alone)
"""Model calls the run expects at once now, this one included: asked before each model call."""
