"""Fine-tune the bundled model on your own low/high-resolution pairs, then use the result.

Run: python examples/train_on_pairs.py [WORKDIR]

Same as (--chip 8 cuts 56 chips from this 64 x 64 px LR pair, the default --chip 32 only 4;
validation chips come from the bottom 20 % of the rows there, 30 % here):
  geosr train --lr lr.tif --hr scene.tif --init cnnrnn-fast --steps 4 --chip 8 -o runs/mine
  geosr run lr.tif --model runs/mine/cnnrnn-fast_x4.safetensors -o mine_x4.tif

Here the pair is made from one scene (the LR is the exact 4 x 4 mean of the HR); with real
pairs (Sentinel-2 with aerial imagery) geosr co-registers the HR onto the LR grid first,
removes the residual sub-pixel shift and matches the radiometry.  A handful of steps keeps
the example quick; real fine-tuning runs thousands (see pipelines/*.toml).
"""

from __future__ import annotations

import numpy as np
import rasterio
from _scene import example_scene, workdir

import geosr
from geosr.orchestrate.training_store import build_training_store
from geosr.train.config import load_config
from geosr.train.trainer import train

folder = workdir()
hr = example_scene(folder, size=256)
with rasterio.open(hr) as src:
    data, profile = src.read().astype(float), src.profile
lr = folder / "lr.tif"
small = dict(profile, width=64, height=64, transform=profile["transform"] @ rasterio.Affine.scale(4))
with rasterio.open(lr, "w", **small) as dst:
    dst.write(np.rint(data.reshape(1, 64, 4, 64, 4).mean(axis=(2, 4))).astype("uint16"))

store = folder / "pairs.zarr"
# The bottom 30 % of the rows is held out for validation (a spatial split).
info = build_training_store(
    [(lr, hr)],
    store,
    scale=4,
    lr_chip=16,
    stride=8,
    val_fraction=0.3,
    scheduler="synchronous",
    overwrite=True,
)
print("training store:", store, "chips:", [p["chips"] for p in info["pairs"]])
config = load_config(
    None,
    {
        "name": "cnnrnn-fast",
        "scale": 4,
        "init": "cnnrnn-fast",  # start from the bundled weights: fine-tuning
        "steps": 4,
        "batch_size": 4,
        "threads": 2,
        "val_every": 4,
        "checkpoint_every": 4,
        "output": str(folder / "runs" / "mine"),
        "data": {"store": str(store), "lr_chip": 16, "val_chips": 4},
    },
)
result = train(config, overwrite=True)  # a rerun of this example replaces its run
print("weights:", result.weights)
out = geosr.upscale_file(lr, folder / "mine_x4.tif", scale=4, model=str(result.weights), overwrite=True)
with rasterio.open(out) as f:
    print(f"fine-tuned model {f.tags()['GEOSR_MODEL']}: {f.width}x{f.height} px written to {out}")
