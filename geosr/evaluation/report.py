"""Reports of an :class:`~geosr.evaluation.wald.EvalReport`: terminal table, JSON, PNG bar chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from geosr.errors import OptionError, OutputError
from geosr.evaluation.wald import EvalReport


def _fmt(value: float, digits: int = 2) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def table(report: EvalReport) -> Table:
    """A rich table: one row per image and band, then the mean."""
    t = Table(
        title=(
            f"geosr evaluate ({report.mode}, x{report.scale}, model {report.model}, border {report.border})"
        )
    )
    for col in (
        "image",
        "band",
        "PSNR",
        "SSIM",
        "bicubic PSNR",
        "bicubic SSIM",
        "gain dB",
        "LR err %",
    ):
        t.add_column(col, justify="left" if col == "image" else "right")
    for im in report.images:
        for b in im.bands:
            t.add_row(
                Path(im.path.split(" vs ")[0]).name,
                str(b.band),
                _fmt(b.psnr),
                _fmt(b.ssim, 4),
                _fmt(b.psnr_bicubic),
                _fmt(b.ssim_bicubic, 4),
                _fmt(b.gain_db),
                _fmt(100 * b.lr_consistency, 3),
            )
    s = report.summary()
    if s:
        t.add_section()
        t.add_row(
            "mean",
            "",
            _fmt(s["psnr"]),
            _fmt(s["ssim"], 4),
            _fmt(s["psnr_bicubic"]),
            _fmt(s["ssim_bicubic"], 4),
            _fmt(s["gain_db"]),
            _fmt(100 * s["lr_consistency"], 3),
        )
    return t


def print_report(report: EvalReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(report))
    s = report.summary()
    if s:
        console.print(f"mean gain over bicubic {s['gain_db']:+.2f} dB, worst {s['min_gain_db']:+.2f} dB")


def write_json(report: EvalReport, path: str | Path) -> Path:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=True), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the JSON report to {p}: {exc}") from exc
    return p


def write_plot(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the gain over bicubic per image and band (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OptionError("--plot needs matplotlib: pip install matplotlib") from exc
    labels, gains = [], []
    for im in report.images:
        for b in im.bands:
            labels.append(f"{Path(im.path.split(' vs ')[0]).stem[:18]} b{b.band}")
            gains.append(b.gain_db)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 2), 3.5))
    ax.bar(range(len(gains)), gains, color=["tab:green" if g >= 0 else "tab:red" for g in gains])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("PSNR gain over bicubic (dB)")
    ax.set_title(f"{report.model} x{report.scale} ({report.mode})")
    fig.tight_layout()
    p = Path(path)
    try:
        fig.savefig(p, dpi=120)
    except OSError as exc:
        raise OutputError(f"cannot write the plot to {p}: {exc}") from exc
    finally:
        plt.close(fig)
    return p
