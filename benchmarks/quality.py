"""Issue 3's quality table: ``python -m benchmarks.quality`` (``make quality``).

The bundled default model at x4 and x2, Wald protocol on the recipes' held-out
scenes (see :mod:`benchmarks.heldout`), exactly as ``geosr evaluate`` computes it:
LR = exact mean of every ``s x s`` block of the HR, SR and bicubic both through
the full ``geosr run`` pipeline, PSNR range = 99.9th - 0.1st percentile of the
valid HR pixels, a 16-pixel HR border excluded.  Writes
``benchmarks/quality_x{4,2}.json`` and the tables of ``benchmarks/QUALITY.md``
(between their markers; the prose around them is written by hand).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.heldout import validation_files
from geosr.evaluation.report import write_json
from geosr.evaluation.wald import EvalReport, evaluate_wald
from geosr.train.config import load_config

HERE = Path(__file__).parent
DOC = HERE / "QUALITY.md"
RECIPE = "pipelines/cnnrnn_fast_x{scale}.toml"
NAMES = {
    "m_4709963_se_14_1_20190904": "NAIP 2019",
    "LC81070352015122LGN00_B4": "Landsat-8 B4",
    "OSBS_029_rows0-1": "NEON OSBS_029",
    "tgt_S2A_20160529T153631_T33UUU_sub_rows0.5-1": "Sentinel-2 lower half",
}


def markers(scale: int) -> tuple[str, str]:
    return f"<!-- x{scale} table: python -m benchmarks.quality -->", f"<!-- end of x{scale} table -->"


def table(report: EvalReport) -> str:
    lines = [
        "| image | band | PSNR | SSIM | bicubic PSNR | bicubic SSIM | gain dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for image in report.images:
        name = NAMES.get(Path(image.path).stem, Path(image.path).stem)
        for b in image.bands:
            lines.append(
                f"| {name} | {b.band} | {b.psnr:.2f} | {b.ssim:.4f} | {b.psnr_bicubic:.2f} "
                f"| {b.ssim_bicubic:.4f} | {b.gain_db:+.2f} |"
            )
    s = report.summary()
    lines.append(
        f"| **mean** | | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['psnr_bicubic']:.2f} "
        f"| {s['ssim_bicubic']:.4f} | **{s['gain_db']:+.2f}** |"
    )
    lines += ["", "| image | mean gain over its bands, dB |", "|---|---|"]
    for image in report.images:
        name = NAMES.get(Path(image.path).stem, Path(image.path).stem)
        lines.append(f"| {name} | {sum(b.gain_db for b in image.bands) / len(image.bands):+.2f} |")
    return "\n".join(lines)


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text:
        return text.rstrip() + f"\n\n{begin}\n{body}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="*", default=[4, 2])
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# geosr quality\n"
    with tempfile.TemporaryDirectory(prefix="geosr-quality-") as tmp:
        for scale in args.scales:
            files = validation_files(load_config(RECIPE.format(scale=scale)), Path(tmp))
            report = evaluate_wald(files, scale=scale, border=16)
            write_json(report, HERE / f"quality_x{scale}.json")
            text = replace_between(text, *markers(scale), table(report))
            print(f"x{scale}: mean gain {report.summary()['gain_db']:+.2f} dB")
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
