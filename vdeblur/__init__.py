"""vdeblur: video deblurring with the attentive multi-scale network of Xu, Zhu, Quan and Ji (CVIU 2021)."""

from __future__ import annotations

import os

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .errors import VdeblurError
from .network import DeblurNet, ModelConfig, build_model, count_parameters, flops_per_frame

__version__ = "0.1.0"

__all__ = [
    "DeblurNet",
    "ModelConfig",
    "VdeblurError",
    "__version__",
    "build_model",
    "count_parameters",
    "deblur_video",
    "flops_per_frame",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
]


def load_model(path: str | os.PathLike | None = None) -> DeblurNet:
    """Load a checkpoint in eval mode; ``None`` loads the default weights shipped in the package."""
    if path is None:
        from .weights import default_weights_path

        path = default_weights_path()
    return load_checkpoint(path)


def __getattr__(name: str):
    """``vdeblur.deblur_video`` is imported on first use, so ``import vdeblur`` stays light (no PyAV)."""
    if name == "deblur_video":
        from .pipeline import deblur_video

        return deblur_video
    raise AttributeError(f"module 'vdeblur' has no attribute {name!r}")
