"""``torch.compile`` for the torch backend, with inductor's caches kept where the next run finds them.

A user waits for the first compile (tens of seconds, minutes with max-autotune), so its results
must outlive the process. Inductor already caches compiled graphs (FX graph cache), AOT autograd
results and autotuning choices on disk, under ``TORCHINDUCTOR_CACHE_DIR``, which defaults to
``/tmp/torchinductor_<user>``: wiped on reboot and shared by every program of the user. vdeblur
points it at ``$XDG_CACHE_HOME/vdeblur/torchinductor`` (``~/.cache/vdeblur/torchinductor``)
unless the user chose a directory. Inductor reads the variable each time it needs the
directory, so setting it before the first compile is enough.

One catch: importing ``torch._dynamo`` (any compile, the ONNX exporter) writes inductor's default
into the variable, after which a user's value and torch's default look alike. Torch's default is
therefore treated as "not chosen"; a user who wants exactly ``/tmp/torchinductor_<user>`` can say
so with a path spelled differently (a trailing slash).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import VdeblurError
from ..fileio import cache_root
from . import COMPILE_MODES

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"

#: Modes in which inductor captures CUDA graphs itself (our --cuda-graphs would capture twice).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


def default_cache_dir(environ=os.environ) -> Path:
    return cache_root(environ) / "torchinductor"


def _torch_default() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir as inductor_default
    except ImportError:   # layout of another torch: then no value can be mistaken for torch's own
        return None
    return os.path.abspath(inductor_default())


def compile_cache_dir(environ=os.environ) -> tuple[Path, str]:
    """(directory, "user" or "vdeblur"): the user's TORCHINDUCTOR_CACHE_DIR if they set one, else ours."""
    chosen = environ.get(CACHE_ENV)
    if chosen and chosen != _torch_default():
        return Path(chosen), "user"
    return default_cache_dir(environ), "vdeblur"


def use_compile_cache(environ=os.environ) -> Path:
    """Point inductor's on-disk caches at :func:`compile_cache_dir` and create it; returns it."""
    path, _ = compile_cache_dir(environ)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VdeblurError(f"torch.compile cache {path}: cannot create it ({e.strerror}); "
                           f"set {CACHE_ENV} to a writable directory") from None
    environ[CACHE_ENV] = str(path)
    return path


def compile_model(model: torch.nn.Module, mode: str) -> Path:
    """``model.compile(mode=...)`` in place (lazy: the work happens on the first call per input
    shape) with the persistent cache switched on; returns the cache directory."""
    if mode not in COMPILE_MODES:
        raise VdeblurError(f"unknown compile mode {mode!r}; choose from {', '.join(COMPILE_MODES)}")
    cache = use_compile_cache()
    # nn.Module.compile swaps the module's __call__, so DeblurNet.restore's self(...) runs compiled.
    model.compile(mode=None if mode == "default" else mode)
    return cache


def mark_step() -> None:
    """Tell inductor's CUDA-graph trees a new inference step begins, so the previous step's
    outputs (already copied off the GPU) may be overwritten instead of forcing a re-record."""
    torch.compiler.cudagraph_mark_step_begin()
