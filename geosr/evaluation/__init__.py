"""Quality of super-resolution against a reference: metrics, the Wald protocol, reports."""

from geosr.evaluation.metrics import (
    BandMetrics,
    band_metrics,
    lr_consistency,
    psnr,
    psnr_range,
    ssim,
)
from geosr.evaluation.wald import EvalReport, ImageResult, evaluate_paired, evaluate_wald, wald_lr

__all__ = [
    "BandMetrics",
    "EvalReport",
    "ImageResult",
    "band_metrics",
    "evaluate_paired",
    "evaluate_wald",
    "lr_consistency",
    "psnr",
    "psnr_range",
    "ssim",
    "wald_lr",
]
