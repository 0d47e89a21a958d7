"""Inference backends behind one small interface (after Polygraphy's runners).

The pipeline asks :func:`open_backend` for a backend by name; each backend module is imported only
when it is asked for, so the package works on machines without TensorRT or ONNX Runtime and a
missing library is reported when (and only when) its backend is used.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, replace

from ..errors import VdeblurError
from .base import Backend

__all__ = ["AUTO_ORDER", "BACKENDS", "COMPILE_MODES", "CPU_FP32_ORDER", "Backend", "BackendOptions", "add_torch_arguments",
           "auto_order", "backend_class", "open_backend", "torch_argv", "torch_options"]

#: ``torch.compile`` modes the torch backend offers (``--compile`` alone is "default").
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class BackendOptions:
    """Everything a backend may need to load; each backend reads the fields that concern it."""

    weights: str | None = None      # checkpoint path; None = shipped default
    device: str = "auto"
    precision: str = "auto"
    batch: int = 1
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode; set implies compile
    fused_attention: bool | None = None  # torch on CUDA: the Triton fused attention ops (None: on where CUDA and Triton are)
    cuda_graphs: bool | None = None      # torch on CUDA: replay the forward as captured CUDA graphs (None: on CUDA)
    engine: str | None = None       # TensorRT engine path (tensorrt backend)
    onnx: str | None = None         # ONNX file (onnxruntime backend)
    deep_input: bool = False        # frames of more than 8 bits: only torch keeps them at 16 bits
    threads: int = 0                # CPU threads for the model (torch and ONNX Runtime); 0: one per core


# name -> "module:Class", imported lazily.
BACKENDS: dict[str, str] = {
    "torch": "vdeblur.backends.torch_backend:TorchBackend",
    "onnxruntime": "vdeblur.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "vdeblur.backends.tensorrt_backend:TensorRTBackend",
}

# What "auto" tries, fastest first; names not in BACKENDS are skipped.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "torch")
# Where torch would run in fp32 on a CPU (no native bf16), ONNX Runtime measured 1.13-1.24x torch's
# speed (BENCHMARKS.md), so "auto" tries it before torch there, for 8-bit video, when it is installed.
CPU_FP32_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")

# An option that only one backend reads makes "auto" mean that backend (and its errors are shown).
_IMPLIED_BY_OPTION = {"engine": "tensorrt", "onnx": "onnxruntime"}


def add_torch_arguments(group) -> None:
    """The torch backend's speed switches, shared by `deblur` and `bench` so both spell them alike."""
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the model (torch backend; slow first call, cached on disk for later runs)")
    group.add_argument("--compile-mode", choices=COMPILE_MODES, metavar="MODE",
                       help=f"torch.compile mode, implies --compile: {', '.join(COMPILE_MODES)} (default: default)")
    # On by default on CUDA: together 1.42x eager fp16 at 720p on an H200, same output (BENCHMARKS.md).
    group.add_argument("--fused-attention", action=argparse.BooleanOptionalAction, default=None,
                       help="torch backend on CUDA: run each block's attention as the fused Triton kernels "
                            "(default: on where CUDA and Triton are)")
    group.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                       help="torch backend on CUDA: capture the forward pass once per frame size and replay it "
                            "(default: on for CUDA, unless --compile-mode captures graphs itself)")


def torch_options(args) -> dict:
    """BackendOptions fields from the arguments :func:`add_torch_arguments` added."""
    return {"compile": bool(args.compile or args.compile_mode), "compile_mode": args.compile_mode,
            "fused_attention": args.fused_attention, "cuda_graphs": args.cuda_graphs}


def torch_argv(options: dict) -> list[str]:
    """The command-line flags that give back ``options`` (for child processes)."""
    argv = []
    if options.get("compile_mode"):
        argv += ["--compile-mode", options["compile_mode"]]
    elif options.get("compile"):
        argv.append("--compile")
    for flag, key in (("--fused-attention", "fused_attention"), ("--cuda-graphs", "cuda_graphs")):
        if options.get(key) is not None:   # None: the child picks the default itself
            argv.append(flag if options[key] else "--no-" + flag[2:])
    return argv


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
    if "," in options.device or options.device == "cuda:all":
        return _open_on_each(name, options)
    if name != "auto":
        for option, implied in _IMPLIED_BY_OPTION.items():
            if getattr(options, option) and name != implied:   # not silently left unused
                raise VdeblurError(f"--{option} is for the {implied} backend, not --backend {name}")
        if name != "torch":
            asked = [flag for flag, on in (("--compile-mode", options.compile_mode), ("--compile", options.compile),
                                           ("--fused-attention", options.fused_attention is True),
                                           ("--cuda-graphs", options.cuda_graphs is True)) if on]
            if asked:
                raise VdeblurError(f"{asked[0]} is for the torch backend, not --backend {name}")
        return backend_class(name).from_options(options)
    for option, implied in _IMPLIED_BY_OPTION.items():
        if getattr(options, option):
            if implied not in BACKENDS:
                raise VdeblurError(f"--{option} needs the {implied} backend, which this vdeblur does not have")
            return backend_class(implied).from_options(options)
    candidates = [n for n in auto_order(options) if n in BACKENDS]
    last_error: VdeblurError | None = None
    for candidate in candidates:
        try:
            return backend_class(candidate).from_options(options)
        except VdeblurError as e:
            last_error = e
    raise last_error or VdeblurError("no inference backend is registered")


def auto_order(options: BackendOptions) -> tuple[str, ...]:
    """The backends "auto" tries for these options, fastest first."""
    return CPU_FP32_ORDER if _onnxruntime_first(options) else AUTO_ORDER


def _onnxruntime_first(options: BackendOptions) -> bool:
    """True where "auto" would run torch in fp32 on the CPU with nothing only torch does asked for."""
    import importlib.util

    if options.deep_input or options.compile or options.compile_mode or options.fused_attention or options.cuda_graphs:
        return False
    if options.precision not in ("auto", "fp32") or options.device not in ("auto", "cpu"):
        return False
    if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx")):
        return False
    from ..hardware import cpu_bf16_kind, resolve_device

    return resolve_device(options.device).type == "cpu" and cpu_bf16_kind() is None


def _open_on_each(name: str, options: BackendOptions) -> Backend:
    """The torch backend once per GPU of ``options.device`` ("cuda:0,cuda:1", "cuda:all")."""
    from ..hardware import split_devices
    from .multi_device import MultiDevice

    if name not in ("auto", "torch") or options.engine or options.onnx:
        raise VdeblurError(f"--device {options.device}: several GPUs work with the torch backend "
                           f"(--backend torch or auto, without --engine or --onnx)")
    devices = split_devices(options.device)
    if len(devices) == 1:
        return backend_class("torch").from_options(replace(options, device=devices[0]))
    backends: list[Backend] = []
    try:
        for device in devices:
            backends.append(backend_class("torch").from_options(replace(options, device=device)))
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    return MultiDevice(backends, devices)
