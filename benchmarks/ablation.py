"""Issue 3's ablation: what each part of the CNN-RNN earns, against the EDSR baseline.

``python -m benchmarks.ablation`` trains every variant that has no weights yet
(from ``pipelines/cnnrnn_fast_x4.toml`` with one change each, at a short budget),
evaluates all of them the same way, and writes ``benchmarks/ablation.json`` and
``benchmarks/ABLATION.md``.  ``--report-only`` rewrites the table from the JSON.

Every variant is measured by

- the Wald protocol x4 on the recipe's held-out scenes (``geosr evaluate``'s
  code: LR = exact 4 x 4 block mean, SR through the full ``geosr run`` pipeline,
  PSNR range = 99.9th - 0.1st percentile of the valid HR, 16-pixel border out),
  as the mean gain over bicubic of all bands and the worst image;
- synthetic multi-frame stacks made from the same held-out scenes (3 frames:
  the Wald LR plus two copies shifted by up to half an LR pixel, each with
  independent noise of 0.2 % of the scene's range), super-resolved from frame 0
  alone (T = 1) and from all three (T = 3): what the recurrent fusion adds;
- its training time and forward FLOPs per LR pixel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.heldout import image_gains, short_name, validation_files
from benchmarks.quality import replace_between
from geosr.evaluation.wald import evaluate_wald
from geosr.models import flops_per_lr_pixel, load_model
from geosr.models.bicubic import bicubic_upsample
from geosr.train.config import TrainConfig, load_config
from geosr.train.data import ChipSampler, load_scenes
from geosr.train.degrade import DegradationConfig
from geosr.train.trainer import psnr_batch, train

HERE = Path(__file__).parent
RESULTS_JSON = HERE / "ablation.json"
RESULTS_MD = HERE / "ABLATION.md"
BASE = "pipelines/cnnrnn_fast_x4.toml"
SHORT_STEPS = 2000
BEGIN, END = "<!-- table: python -m benchmarks.ablation -->", "<!-- end of table -->"

# Synthetic revisits for the T = 1 vs T = 3 comparison.
MULTI_FRAME = DegradationConfig(
    blur_probability=0.0,
    noise_sigma=(0.002, 0.002),
    quantise=False,
    multi_frame_probability=1.0,
    frames=(3, 3),
    max_shift=0.5,
)


@dataclass(frozen=True)
class Variant:
    """One trained model of the table: a recipe plus overrides."""

    key: str
    label: str
    recipe: str = BASE
    overrides: dict[str, Any] = field(default_factory=dict)
    full: bool = False  # the recipe's own budget and run folder, else SHORT_STEPS

    def config(self) -> TrainConfig:
        if self.full:
            return load_config(self.recipe, self.overrides)
        folder = f"runs/ablation/{self.key}"
        short = {"output": folder, "weights": f"{folder}/model_x4", "steps": SHORT_STEPS}
        return load_config(self.recipe, {**short, **self.overrides})


VARIANTS = [
    Variant("bundled", "cnnrnn-fast, full recipe (the bundled x4 weights)", full=True),
    Variant(
        "edsr", "EDSR baseline, same recipe and training time", "pipelines/edsr_baseline_x4.toml", full=True
    ),
    Variant(
        "fast-6000",
        "cnnrnn-fast, full recipe at 6000 steps (the previous bundled weights)",
        overrides={
            "steps": 6000,
            "output": "runs/ablation/fast-6000",
            "weights": "runs/ablation/fast-6000/model_x4",
        },
        full=True,
    ),
    Variant(
        "edsr-3000",
        "EDSR baseline, 3000 steps (the training time of 6000 cnnrnn-fast steps)",
        "pipelines/edsr_baseline_x4.toml",
        overrides={
            "steps": 3000,
            "output": "runs/ablation/edsr-3000",
            "weights": "runs/ablation/edsr-3000/model_x4",
        },
        full=True,
    ),
    Variant(
        "best", "cnnrnn-best, its recipe (the bundled best x4)", "pipelines/cnnrnn_best_x4.toml", full=True
    ),
    Variant("short", f"cnnrnn-fast, {SHORT_STEPS} steps (the reference of the rows below)"),
    Variant(
        "no-recurrence",
        "  no ConvGRU (frames averaged, unshared conv blocks)",
        overrides={"model": {"recurrent": False}},
    ),
    Variant("k0", "  K = 0 refinement steps", overrides={"model": {"refine_steps": 0}}),
    Variant("k4", "  K = 4 refinement steps", overrides={"model": {"refine_steps": 4}}),
    Variant(
        "no-projection", "  no radiometric projection", overrides={"model": {"radiometric_projection": False}}
    ),
    Variant(
        "noisy-degradation",
        "  previous degradation (PSF on 30 %, noise up to 0.5 %)",
        overrides={"degradation": {"blur_probability": 0.3, "noise_sigma": [0.0, 0.005]}},
    ),
    Variant("edsr-short", f"EDSR baseline, {SHORT_STEPS} steps", "pipelines/edsr_baseline_x4.toml"),
]


def wald(weights: Path, files: list[Path]) -> dict[str, Any]:
    """Mean gain over bicubic of every band, per image, and the worst image."""
    report = evaluate_wald(files, scale=4, model=str(weights), border=16)
    per_image = image_gains(report)
    return {
        "mean_gain_db": report.summary()["gain_db"],
        "per_image": per_image,
        "worst_image_db": min(per_image.values()),
    }


def multi_frame(weights: Path, config: TrainConfig, chips: int = 64) -> dict[str, float]:
    """PSNR gain over bicubic (of frame 0) from T = 1 and from T = 3 synthetic revisits."""
    scenes = load_scenes(config.data.val, "validation")
    lrs, hrs = [], []
    for k, scene in enumerate(scenes):
        sampler = ChipSampler([scene], scale=4, lr_chip=48, degradation=MULTI_FRAME, seed=1234 + k)
        lr, hr = sampler.batch(0, chips // len(scenes), stream=2)
        lrs.append(lr)
        hrs.append(hr)
    lr_t, hr_t = torch.from_numpy(np.concatenate(lrs)), torch.from_numpy(np.concatenate(hrs))
    model = load_model(str(weights), bands=1, scale=4, device="cpu")
    bicubic = float(psnr_batch(bicubic_upsample(lr_t[:, 0], 4, torch.float32), hr_t, 16).mean())
    with torch.inference_mode():
        t1 = float(psnr_batch(model(lr_t[:, :1]).float(), hr_t, 16).mean())
        t3 = float(psnr_batch(model(lr_t).float(), hr_t, 16).mean())
    return {"t1_gain_db": t1 - bicubic, "t3_gain_db": t3 - bicubic}


def card_facts(weights: Path) -> dict[str, Any]:
    model = load_model(str(weights), bands=1, scale=4, device="cpu")
    return {
        "steps": model.card.training["steps"],
        "train_seconds": model.card.training["seconds"],
        "kflop_per_lr_px": round(flops_per_lr_pixel(model) / 1e3),
        "params": sum(p.numel() for p in model.parameters()),
    }


def run_variant(variant: Variant, files: list[Path], threads: int) -> dict[str, Any]:
    config = variant.config()
    weights = config.weights_stem.with_suffix(".safetensors")
    if not weights.exists():
        print(f"[{variant.key}] training {config.steps} steps into {config.output}", flush=True)
        train(dataclasses.replace(config, threads=threads), resume=True, recipe=variant.recipe)
    print(f"[{variant.key}] evaluating {weights}", flush=True)
    return {
        "label": variant.label,
        **card_facts(weights),
        **wald(weights, files),
        **multi_frame(weights, config),
    }


def write_markdown(results: dict[str, Any]) -> None:
    order = [v.key for v in VARIANTS if v.key in results]
    labels = {v.key: v.label for v in VARIANTS}
    names = next(iter(results.values()))["per_image"].keys() if results else []
    head = ["variant", "steps", "train s", "kFLOP/px", "mean dB", *(short_name(n) for n in names)]
    head += ["T=1 dB", "T=3 dB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in order:
        r = results[key]
        cells = [
            labels[key],
            str(r["steps"]),
            f"{r['train_seconds']:.0f}",
            str(r["kflop_per_lr_px"]),
            f"**{r['mean_gain_db']:+.2f}**",
            *(f"{r['per_image'][n]:+.2f}" for n in names),
            f"{r['t1_gain_db']:+.2f}",
            f"{r['t3_gain_db']:+.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    # The prose around the table is written by hand; only the table is regenerated.
    text = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else "# Ablation\n"
    RESULTS_MD.write_text(replace_between(text, BEGIN, END, "\n".join(lines)), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="variant keys to (re)evaluate")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training (0: default)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="geosr-ablation-") as tmp:
            files = validation_files(load_config(BASE, {}), Path(tmp))
            for variant in VARIANTS:
                if args.only and variant.key not in args.only:
                    continue
                t0 = time.perf_counter()
                results[variant.key] = run_variant(variant, files, args.threads)
                gain = results[variant.key]["mean_gain_db"]
                print(f"[{variant.key}] {gain:+.3f} dB ({time.perf_counter() - t0:.0f} s)")
                RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_markdown(results)


if __name__ == "__main__":
    main()
