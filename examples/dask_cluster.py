"""The same job on a Dask cluster: here a local one of two workers; pass tcp://host:8786 for yours.

Run: python examples/dask_cluster.py [WORKDIR] [SCHEDULER_ADDRESS]

The ``__main__`` guard is needed whenever a script starts local worker
processes: they re-import the main module.
"""

from __future__ import annotations

import sys

from _scene import example_scene, workdir

import geosr


def main() -> None:
    folder = workdir()
    scene = example_scene(folder)
    target = {"scheduler": sys.argv[2]} if len(sys.argv) > 2 else {"workers": 2}
    out = geosr.upscale_file(scene, folder / "cluster_x4.tif", scale=4, overwrite=True, **target)
    print("written by the cluster's workers:", out)


if __name__ == "__main__":
    main()
