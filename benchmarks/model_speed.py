"""Forward-pass speed of the registered models: ``python -m benchmarks.model_speed``.

Issue 3's measure: batch 8 of 128 x 128 LR tiles, one band, x4, through
:class:`geosr.predictor.Predictor` (channels_last, inference mode, bf16 autocast
or fp32) on the CPU, in output megapixels per second per band.  ``--device cuda``
measures the GPU (bf16, fp16 and fp32; each call's host-to-device and back copies
included, as ``geosr run`` makes them) and writes ``model_speed_cuda.json``;
``--batch`` and ``--tile`` give a GPU work enough to fill it.  The models are
measured in interleaved rounds (one call of each per round, median over the
rounds) so that load from other jobs lands on all of them alike; the ratios to
the EDSR-style baseline are the robust figures on a shared machine.

Writes ``benchmarks/model_speed.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.measure import machine
from geosr.models import build_model, flops_per_lr_pixel
from geosr.predictor import Predictor

HERE = Path(__file__).parent
MODELS = ("cnnrnn-fast", "cnnrnn-best", "edsr-baseline")
BASELINE = "edsr-baseline"
BATCH, TILE, SCALE = 8, 128, 4
PRECISIONS = {"cpu": ("bf16", "fp32"), "cuda": ("bf16", "fp16", "fp32")}


def measure(
    rounds: int, precisions: tuple[str, ...], device: str = "cpu", size: tuple[int, int] = (BATCH, TILE)
) -> dict[str, Any]:
    """Median seconds per batch of every model and precision, interleaved."""
    n, tile = size
    batch = np.random.default_rng(0).random((n, 1, 1, tile, tile), dtype=np.float32)
    predictors = {
        (name, p): Predictor(build_model(name, scale=SCALE), device=device, precision=p)
        for name in MODELS
        for p in precisions
    }
    for predict in predictors.values():  # warm-up: oneDNN picks its kernels on the first calls
        predict(batch)
        predict(batch)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in predictors}
    for _ in range(rounds):
        for key, predict in predictors.items():
            t0 = time.perf_counter()
            predict(batch)
            samples[key].append(time.perf_counter() - t0)
    out_mpx = n * (tile * SCALE) ** 2 / 1e6
    results: dict[str, Any] = {}
    for name in MODELS:
        model = build_model(name, scale=SCALE)
        row: dict[str, Any] = {
            "kflop_per_lr_px": round(flops_per_lr_pixel(model) / 1e3),
            "params": sum(p.numel() for p in model.parameters()),
        }
        for p in precisions:
            seconds = statistics.median(samples[(name, p)])
            row[f"{p}_out_mpx_per_s"] = round(out_mpx / seconds, 2)
            row[f"{p}_seconds"] = [round(s, 4) for s in samples[(name, p)]]
        results[name] = row
    for name in MODELS:
        for p in precisions:
            base = results[BASELINE][f"{p}_out_mpx_per_s"]
            results[name][f"{p}_vs_baseline"] = round(results[name][f"{p}_out_mpx_per_s"] / base, 3)
    return results


def table(results: dict[str, Any], precisions: tuple[str, ...]) -> str:
    head = ["model", "params", "kFLOP / LR px"]
    for p in precisions:
        head += [f"{p} out Mpx/s/band", f"{p} vs EDSR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, f"{r['params']:,}", str(r["kflop_per_lr_px"])]
        for p in precisions:
            cells += [f"{r[f'{p}_out_mpx_per_s']:.1f}", f"{r[f'{p}_vs_baseline']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", choices=sorted(PRECISIONS), default="cpu")
    parser.add_argument("--batch", type=int, default=BATCH, help="LR tiles per call")
    parser.add_argument("--tile", type=int, default=TILE, help="LR tile edge, pixels")
    args = parser.parse_args(argv)
    precisions = PRECISIONS[args.device]
    results = measure(args.rounds, precisions, args.device, (args.batch, args.tile))
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "input": f"batch {args.batch} x 1 band x {args.tile} x {args.tile} LR, x{SCALE}",
        "models": results,
    }
    name = "model_speed.json" if args.device == "cpu" else f"model_speed_{args.device}.json"
    (HERE / name).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(table(results, precisions))


if __name__ == "__main__":
    main()
