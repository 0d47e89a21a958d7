"""vdeblur: video deblurring with the attentive multi-scale network of Xu, Zhu, Quan and Ji (CVIU 2021)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import VdeblurError

if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from .network import DeblurNet, ModelConfig, build_model, count_parameters, flops_per_frame

__version__ = "0.1.0"

# Imported on first use: `import vdeblur` (and so the `vdeblur` command before it has set up its
# Ctrl-C handling) does not wait the second or so that importing torch takes.
_LAZY = {
    "load_checkpoint": "checkpoint", "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "DeblurNet": "network", "ModelConfig": "network", "build_model": "network", "count_parameters": "network",
    "flops_per_frame": "network", "deblur_video": "pipeline",
}

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


def load_model(path: str | os.PathLike | None = None) -> "DeblurNet":
    """Load a checkpoint in eval mode; ``None`` loads the default weights shipped in the package."""
    from .checkpoint import load_checkpoint

    if path is None:
        from .weights import default_weights_path

        path = default_weights_path()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model takes a checkpoint path (str or os.PathLike) or None, got {type(path).__name__}")
    return load_checkpoint(path)


def __getattr__(name: str):
    """The names in ``_LAZY``, imported from their module on first use (``deblur_video`` needs PyAV)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vdeblur' has no attribute {name!r}")
