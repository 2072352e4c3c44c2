"""``make demo``: super-resolve a real (or, without the data folder, synthetic) scene.

Cuts a 512 x 512 window of the Sentinel-2 JP2 in ``$GEOSR_DATA_DIR`` into
``out/demo/scene.tif`` (synthesising a scene when the data is absent), runs the
same job as ``geosr run scene.tif --scale 4``, checks the COG and prints where
the output is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

S2_JP2 = "sentinel2/tgt_S2A_20160529T153631_T33UUU_sub.jp2"


def make_demo_scene(folder: Path) -> Path:
    """Write the demo input and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scene.tif"
    source = Path(os.environ.get("GEOSR_DATA_DIR", "../shared/data")) / S2_JP2
    if source.exists():
        with rasterio.open(source) as src:
            window = Window(900, 1800, 512, 512)
            data = src.read(window=window)
            profile = {
                "driver": "GTiff",
                "count": 1,
                "dtype": "uint16",
                "width": 512,
                "height": 512,
                "crs": src.crs,
                "transform": src.window_transform(window),
                "nodata": 0,
            }
        description = f"{S2_JP2} (Sentinel-2 B03, 10 m), window 512 x 512"
    else:
        yy, xx = np.mgrid[0:512, 0:512]
        data = (3000 + 1500 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 4 * xx).astype("uint16")[None]
        from affine import Affine

        profile = {
            "driver": "GTiff",
            "count": 1,
            "dtype": "uint16",
            "width": 512,
            "height": 512,
            "crs": "EPSG:32633",
            "transform": Affine(10, 0, 335440, 0, -10, 5866490),
            "nodata": 0,
        }
        description = "synthetic 512 x 512 scene (no GEOSR_DATA_DIR found)"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.set_band_description(1, "B03")
    print(f"demo input : {path}  <- {description}")
    return path


def main() -> int:
    from rio_cogeo.cogeo import cog_validate

    import geosr

    scene = make_demo_scene(Path("out/demo"))
    out = geosr.upscale_file(scene, scale=4, overwrite=True)
    valid, errors, _ = cog_validate(str(out))
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        print(f"demo output: {out.resolve()}")
        print(
            f"  {a.width} x {a.height} at {a.res[0]:g} m  ->  {b.width} x {b.height} at {b.res[0]:g} m, "
            f"same bounds: {a.bounds == b.bounds}, CRS {b.crs.to_epsg()}, "
            f"model {b.tags().get('GEOSR_MODEL')}, valid COG: {valid and not errors}"
        )
    return 0 if valid and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
