"""Progress as plain lines, for a stderr that is no terminal: a log file, nohup, CI, a Slurm job.

rich draws its bar only on a terminal; elsewhere it prints nothing until the bar
stops (``geosr run`` turned it off there altogether), so the log of a run of hours
stayed empty until the run ended.  There, :class:`ProgressLines` prints lines such as::

    geosr: scene.tif: 120/480 tiles (25 %), 3m10s elapsed, ~9m30s left

Cadence: a line once the work has moved on by a tenth since the last one, or
once five minutes have passed (a run of hours still says it is alive), but never
within 30 s of the last line or of the start.  A run shorter than 30 s prints no
line (its log stays the outputs' names), a run of minutes about ten, a run of
ten hours about 120; the line for the end comes only after others.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

STEP = 0.1
"""The share of the work that makes a line due."""
QUIET_S = 30.0
"""No line sooner than this after the start or the last line."""
ALIVE_S = 300.0
"""A line at least this often while the work goes on, however slowly."""


class ProgressLines:
    """A ``progress(done, total)`` callback that prints a line now and then on stderr.

    Parameters
    ----------
    label : str
        What advances: the input's name, or ``training``.
    unit : str
        What ``done`` counts: ``tiles``, ``steps``.
    clock : callable
        Seconds, monotonic (the tests give their own).
    """

    def __init__(self, label: str, unit: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.unit = unit
        self._clock = clock
        self._start = clock()
        self._first: tuple[int, float] | None = None  # the rate is measured from the first call
        self._last = (0, self._start)  # done and time at the last line
        self._printed = False

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        """Print a line if one is due; ``extra`` (``loss 0.0123``) goes after the count."""
        now = self._clock()
        if self._first is None:
            # A resumed run starts with the tiles it kept: they say nothing of the rate.
            self._first = (done, now)
            self._last = (done, self._start)
        last_done, last_time = self._last
        quiet = now - last_time
        due = quiet >= QUIET_S and (done - last_done >= STEP * total or quiet >= ALIVE_S)
        # The end, whenever it comes, once there are lines: a log must not stop at 90 %.
        closing = self._printed and done > last_done and done >= total
        if not (due or closing):
            return
        self._last = (done, now)
        self._printed = True
        print(self.line(done, total, now, extra), file=sys.stderr, flush=True)

    def line(self, done: int, total: int, now: float, extra: str = "") -> str:
        """``geosr: LABEL: done/total UNIT (p %)[, extra], elapsed[, ~left]``."""
        percent = 100 * done // total if total > 0 else 0
        parts = [f"geosr: {self.label}: {done}/{total} {self.unit} ({percent} %)"]
        if extra:
            parts.append(extra)
        parts.append(f"{duration(now - self._start)} elapsed")
        first_done, first_time = self._first or (done, now)
        if first_done < done < total and now > first_time:
            left = (total - done) * (now - first_time) / (done - first_done)
            parts.append(f"~{duration(left)} left")
        return ", ".join(parts)


def progress_bar_drawn(console: Any) -> bool:
    """Whether rich draws its bar on ``console`` as it goes: on a terminal, not a dumb one
    (``TERM=dumb``, an editor's shell), where it too shows only the end."""
    return bool(console.is_terminal and not console.is_dumb_terminal)


def duration(seconds: float) -> str:
    """``45s``, ``3m10s``, ``2h05m``: as precise as a log line needs."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
