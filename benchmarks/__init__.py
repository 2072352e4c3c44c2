"""The geosr benchmark harness: ``python -m benchmarks.run`` (``make bench``).

Every figure is the median of several runs, and figures that are compared
(end-to-end vs model compute, geosr vs a peer loop, geosr bicubic vs GDAL) are
measured in interleaved rounds in the same run, so that noise from other jobs
on the machine hits both sides of a ratio alike.  Results go to
``benchmarks/RESULTS.md`` and ``benchmarks/results.json``.
"""

from geosr.allocator import keep_freed_memory

# What the geosr command does first (geosr.cli.main), before numpy and torch start
# threads: the in-process figures then measure the allocator a `geosr run` has (the
# Python API leaves its host's own allocator alone: geosr.allocator).
keep_freed_memory()
