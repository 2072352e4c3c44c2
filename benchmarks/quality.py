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
import json
import tempfile
from pathlib import Path

from benchmarks.heldout import image_gains, short_name, validation_files
from geosr.evaluation.report import write_json
from geosr.evaluation.wald import EvalReport, evaluate_wald
from geosr.models.registry import DEFAULT_MODEL, WEIGHTS_DIR, bundled_weights
from geosr.train.config import load_config

HERE = Path(__file__).parent
DOC = HERE / "QUALITY.md"
RECIPE = "pipelines/cnnrnn_fast_x{scale}.toml"


# (model, scale) pairs measured: the defaults, and the best model where it is bundled.
MODELS = ((DEFAULT_MODEL, 4), (DEFAULT_MODEL, 2), ("cnnrnn-best", 4))


def markers(name: str, scale: int) -> tuple[str, str]:
    tag = f"x{scale}" if name == DEFAULT_MODEL else f"{name} x{scale}"
    return f"<!-- {tag} table: python -m benchmarks.quality -->", f"<!-- end of {tag} table -->"


def table(report: EvalReport) -> str:
    lines = [
        "| image | band | PSNR | SSIM | bicubic PSNR | bicubic SSIM | gain dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for image in report.images:
        name = short_name(Path(image.path).stem)
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
    for stem, gain in image_gains(report).items():
        lines.append(f"| {short_name(stem)} | {gain:+.2f} |")
    return "\n".join(lines)


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text:
        return text.rstrip() + f"\n\n{begin}\n{body}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def record_in_card(report: EvalReport, name: str, scale: int) -> None:
    """Put the held-out result in the bundled card, where ``geosr models`` shows it.

    The training-time validation (mean PSNR of 64 small chips) is kept too; it
    weighs flat chips, where bicubic scores 50 dB, as much as textured ones, so
    the Wald result on whole scenes is the measure.
    """
    card_path = WEIGHTS_DIR / f"{name}_x{scale}.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    per_image = {short_name(stem): round(gain, 3) for stem, gain in image_gains(report).items()}
    card["metrics"].update(
        {
            "wald_mean_gain_db": round(report.summary()["gain_db"], 3),
            "wald_per_image_gain_db": per_image,
            "wald_protocol": "benchmarks/QUALITY.md (make quality): held-out scenes, 16 px border",
        }
    )
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="*", default=[4, 2])
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# geosr quality\n"
    with tempfile.TemporaryDirectory(prefix="geosr-quality-") as tmp:
        for name, scale in MODELS:
            if scale not in args.scales or bundled_weights(name, scale) is None:
                continue
            files = validation_files(load_config(RECIPE.format(scale=scale)), Path(tmp))
            report = evaluate_wald(files, scale=scale, model=name, border=16)
            suffix = "" if name == DEFAULT_MODEL else f"_{name}"
            write_json(report, HERE / f"quality_x{scale}{suffix}.json")
            record_in_card(report, name, scale)
            text = replace_between(text, *markers(name, scale), table(report))
            print(f"{name} x{scale}: mean gain {report.summary()['gain_db']:+.2f} dB")
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
