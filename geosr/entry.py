"""The ``geosr`` command's entry point: quiet about a signal while the CLI itself loads.

Importing :mod:`geosr.cli` (typer, rich and geosr's modules) takes a quarter of a
second, before :func:`geosr.cli.main` installs the handlers that turn Ctrl-C and
SIGTERM into one line; a Ctrl-C then printed a traceback of whichever import it
interrupted.  Nothing has been read or written by then, so the handler here says
so and exits at once with the status a shell expects (128 + the signal).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _stopped_while_starting(signum: int, _frame: FrameType | None) -> None:
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    sys.stderr.write(
        f"error: {what} while geosr was starting; nothing was written: run the same command again\n"
    )
    sys.stderr.flush()
    os._exit(128 + signum)  # no unwinding: an import half done has nothing to clean up


def main() -> None:
    """Run the ``geosr`` command, with a signal during its imports reported in one line."""
    previous = {
        signum: signal.signal(signum, _stopped_while_starting) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    from geosr.cli import main as cli_main

    for signum, handler in previous.items():
        signal.signal(signum, handler)
    cli_main()
