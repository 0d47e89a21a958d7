"""TensorRT glue, kept thin and apart: the fused-attention plugin, the engine builder and cache,
and the pycuda runtime. Nothing here imports TensorRT or pycuda at module import time; the
helpers below do it on use and turn a missing library into one line that says what to install.

Supported: TensorRT 10.9+ (the first with ahead-of-time Python plugins) and 11.x. Only APIs
present in both are used, enums by name (their integer values were renumbered in 11).
"""

from __future__ import annotations

from ..errors import VdeblurError

MIN_VERSION = (10, 9)
INSTALL_HINT = "pip install 'vdeblur[tensorrt]' on a machine with an NVIDIA GPU and driver"


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def import_tensorrt():
    """The ``tensorrt`` module, or a VdeblurError naming what to install."""
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError when libnvinfer is missing
        raise VdeblurError(f"TensorRT is not usable here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'import failed'}); "
                           f"{INSTALL_HINT}") from None
    if version_tuple(trt.__version__)[:2] < MIN_VERSION:
        raise VdeblurError(f"TensorRT {trt.__version__} is too old (the fused-attention plugin needs >= 10.9); {INSTALL_HINT}")
    return trt


def import_pycuda():
    """``(pycuda.driver, primary context)``. The primary context is the one the CUDA runtime, and so
    TensorRT and torch, use; ``pycuda.autoinit`` would make a second, private context instead."""
    try:
        import pycuda.driver as cuda
        import pycuda.autoprimaryctx as primary
    except Exception as e:  # noqa: BLE001 - no pycuda, no driver, or no device
        raise VdeblurError(f"pycuda with a CUDA GPU is needed for TensorRT ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else 'import failed'}); {INSTALL_HINT}") from None
    return cuda, primary.context
