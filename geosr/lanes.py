"""How many model calls a run's lanes compute at once, as the pipeline expects them.

The pipeline (:func:`geosr.pipeline.run_tiles`) hands batches to lanes; each lane's model
call takes a share of torch's threads (:func:`geosr.predictor.shared_threads`).  A share
taken from the calls already in flight missed the one about to start: the first lane's first
call, a few milliseconds ahead of the second, took every thread.  The pipeline knows what
is coming (the batches still to read, those in the model), so it says, per batch, how many
calls to share with; the predictor reads it.  A context variable, so that neither imports the
other and a call outside a run (the Python API on an array) shares with nobody.
"""

from __future__ import annotations

import contextvars

PEERS: contextvars.ContextVar[int] = contextvars.ContextVar("geosr_lane_peers", default=1)
"""Model calls expected at once, this one included, for the batch handed to a lane."""
