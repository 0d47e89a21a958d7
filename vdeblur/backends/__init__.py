"""Inference backends behind one small interface (after Polygraphy's runners).

The pipeline asks :func:`open_backend` for a backend by name; each backend module is imported only
when it is asked for, so the package works on machines without TensorRT or ONNX Runtime and a
missing library is reported when (and only when) its backend is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import VdeblurError
from .base import Backend

__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "BackendOptions", "backend_class", "open_backend"]


@dataclass
class BackendOptions:
    """Everything a backend may need to load; each backend reads the fields that concern it."""

    weights: str | None = None      # checkpoint path; None = shipped default
    device: str = "auto"
    precision: str = "auto"
    batch: int = 1
    compile: bool = False
    engine: str | None = None       # TensorRT engine path (tensorrt backend)
    onnx: str | None = None         # ONNX file (onnxruntime backend)


# name -> "module:Class", imported lazily.
BACKENDS: dict[str, str] = {
    "torch": "vdeblur.backends.torch_backend:TorchBackend",
}

# What "auto" tries, fastest first; names not in BACKENDS are skipped.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "torch")

# An option that only one backend reads makes "auto" mean that backend (and its errors are shown).
_IMPLIED_BY_OPTION = {"engine": "tensorrt", "onnx": "onnxruntime"}


def backend_class(name: str) -> type[Backend]:
    """Import the class registered under ``name``; an unknown name or a missing library is one line."""
    if name not in BACKENDS:
        raise VdeblurError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = e.name or str(e)
        raise VdeblurError(f"backend {name!r} needs the Python package {missing!r}, which is not importable here: {e}") from None
    return getattr(module, class_name)


def open_backend(name: str, options: BackendOptions) -> Backend:
    """Load backend ``name`` (or, for "auto", the first one in AUTO_ORDER that loads here)."""
    if name != "auto":
        return backend_class(name).from_options(options)
    for option, implied in _IMPLIED_BY_OPTION.items():
        if getattr(options, option):
            if implied not in BACKENDS:
                raise VdeblurError(f"--{option} needs the {implied} backend, which this vdeblur does not have")
            return backend_class(implied).from_options(options)
    candidates = [n for n in AUTO_ORDER if n in BACKENDS]
    last_error: VdeblurError | None = None
    for candidate in candidates:
        try:
            return backend_class(candidate).from_options(options)
        except VdeblurError as e:
            last_error = e
    raise last_error or VdeblurError("no inference backend is registered")
