"""``make demo``: super-resolve a real (or, without the data folder, synthetic) scene.

Cuts a 512 x 512 window of the Sentinel-2 JP2 in ``$GEOSR_DATA_DIR`` into
``out/demo/scene.tif`` (synthesising a scene when the data is absent), runs the
same job as ``geosr run scene.tif --scale 4 --quicklook``, checks the COG and
prints where the output and its quicklook PNG are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

S2_JP2 = "sentinel2/tgt_S2A_20160529T153631_T33UUU_sub.jp2"


def make_demo_scene(folder: Path, size: int = 512) -> Path:
    """Write ``folder/scene.tif``, ``size`` x ``size`` uint16 with nodata 0, and return its path.

    Real Sentinel-2 pixels when ``$GEOSR_DATA_DIR`` holds the JP2, a synthetic
    scene on the same UTM zone otherwise (the examples use this too).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scene.tif"
    source = Path(os.environ.get("GEOSR_DATA_DIR", "../shared/data")) / S2_JP2
    if source.exists():
        with rasterio.open(source) as src:
            window = Window(900, 1800, size, size)
            data, crs, transform = src.read(window=window), src.crs, src.window_transform(window)
        description = f"{S2_JP2} (Sentinel-2 B03, 10 m), window {size} x {size}"
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        data = (3000 + 1500 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 4 * xx).astype("uint16")[None]
        crs, transform = "EPSG:32633", Affine(10, 0, 335440, 0, -10, 5866490)
        description = f"synthetic {size} x {size} scene (no GEOSR_DATA_DIR found)"
    profile = {
        "driver": "GTiff",
        "count": 1,
        "dtype": "uint16",
        "width": size,
        "height": size,
        "crs": crs,
        "transform": transform,
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.set_band_description(1, "B03")
    print(f"demo input : {path}  <- {description}")
    return path


def main() -> int:
    """Super-resolve the demo scene x4 into ``out/demo`` with a quicklook, and print what was
    made; 0 when the output is a valid COG, else 1."""
    from rio_cogeo.cogeo import cog_validate

    import geosr

    scene = make_demo_scene(Path("out/demo"))
    # --quicklook: bicubic vs geosr on the centre of the scene (docs/quicklook_demo.png is one).
    out = Path(geosr.upscale_file(scene, scale=4, overwrite=True, quicklook=True))
    valid, errors, _ = cog_validate(str(out))
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        print(f"demo output: {out.resolve()}")
        print(
            f"  {a.width} x {a.height} at {a.res[0]:g} m  ->  {b.width} x {b.height} at {b.res[0]:g} m, "
            f"same bounds: {a.bounds == b.bounds}, CRS EPSG:{b.crs.to_epsg()}, "
            f"model {b.tags().get('GEOSR_MODEL')}, valid COG: {valid and not errors}"
        )
    print(f"quicklook  : {out.with_name(out.stem + '.quicklook.png').resolve()}")
    return 0 if valid and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
