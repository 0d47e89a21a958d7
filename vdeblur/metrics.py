"""PSNR and SSIM the way deblurring papers report them: full frames, RGB, values in [0, 1].

SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, statistics over 'valid' windows only, computed per channel and averaged.
Everything runs in float64 so that the numbers do not depend on the device or precision
the model ran in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """NCHW float64; a single CHW image becomes a batch of one."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():   # 8-bit levels would be scored as if 1 were white: -40 dB
        raise ValueError(f"expected float images in [0, 1], got {x.dtype} (divide 8-bit levels by 255)")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected CHW or NCHW images, got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def _same_shape(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 NCHW batches of one shape: broadcasting (RGB against grey) gave a number."""
    pred, target = _as_batch(pred), _as_batch(target)
    if pred.shape != target.shape:
        raise ValueError(f"image shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return pred, target


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1] (inf where identical)."""
    pred, target = _same_shape(pred, target)
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM (Wang et al. 2004), channels averaged, for images in [0, 1]."""
    pred, target = _same_shape(pred, target)
    n, c, h, w = pred.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    g = _gaussian_window().to(pred.device)
    gx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable Gaussian, 'valid' windows only
        return F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x * mu_x
    var_y = blur(target * target) - mu_y * mu_y
    cov = blur(pred * target) - mu_x * mu_y
    c1, c2 = _K1 ** 2, _K2 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as a saved PNG or video frame would be, so metrics match what users get."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def expected_psnr_for_noise(sigma: float) -> float:
    """PSNR of additive zero-mean noise with standard deviation ``sigma`` (images in [0, 1])."""
    return 20.0 * math.log10(1.0 / sigma)
