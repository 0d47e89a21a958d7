"""What this machine can do: CPU model, native bf16, CUDA, and the optional inference libraries.

Precision is picked at run time from the CPU: bf16 only where the CPU has native bf16
(AMX or AVX-512-BF16); elsewhere bf16 is emulated and hundreds of times slower than fp32.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from dataclasses import dataclass

import torch

from .errors import VdeblurError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_threads(threads: int | None) -> None:
    """``--threads``: 0 (or None) is one per core; more than the machine's CPUs only thrash."""
    cpus = os.cpu_count() or 1
    if threads is not None and not 0 <= threads <= cpus:
        raise VdeblurError(f"--threads must be between 0 (one per core) and this machine's {cpus} CPUs, got {threads}")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_kind() -> str | None:
    """'amx', 'avx512_bf16', or None when bf16 would be emulated."""
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return None


def cpu_description() -> str:
    bf16 = cpu_bf16_kind()
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, bf16: {bf16 or 'emulated (fp32 used)'}"


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if "," in requested or requested == "cuda:all":
        raise VdeblurError(f"--device {requested}: this command runs on one device; `vdeblur deblur` takes several")
    if requested.startswith("cuda"):
        index = requested.partition(":")[2]
        if requested != "cuda" and not (requested.startswith("cuda:") and index.isdigit()):
            raise VdeblurError(f"unknown device {requested!r}; use cuda or cuda:N")
        if not torch.cuda.is_available():
            raise VdeblurError(f"--device {requested}: no CUDA GPU is usable here (torch.cuda.is_available() "
                               "is False); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise VdeblurError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(requested)
    if requested == "cpu":
        return torch.device("cpu")
    raise VdeblurError(f"unknown device {requested!r}; use auto, cpu or cuda")


def split_devices(requested: str) -> list[str]:
    """``--device`` as a list: "cuda:0,cuda:1" names GPUs, "cuda:all" is every GPU here; anything else
    is one device. Each is checked as :func:`resolve_device` checks it."""
    if requested == "cuda:all":
        resolve_device("cuda")
        names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        names = [name.strip() for name in requested.split(",")]
    if len(names) > 1:
        if not all(name.startswith("cuda:") for name in names):
            raise VdeblurError(f"--device {requested}: several devices are GPUs, named cuda:N (e.g. cuda:0,cuda:1) or cuda:all")
        if len(set(names)) != len(names):
            raise VdeblurError(f"--device {requested}: a GPU is named twice")
    for name in names:
        resolve_device(name)
    return names


def resolve_precision(requested: str, device: torch.device) -> str:
    """'auto' -> fp16 on CUDA, bf16 on a CPU with native bf16, else fp32. Explicit choices are honoured."""
    if requested not in PRECISIONS:
        raise VdeblurError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        if device.type == "cpu" and requested == "fp16":
            raise VdeblurError("fp16 is not supported on the CPU; use bf16 or fp32")
        return requested
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_bf16_kind() else "fp32"


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "usable": self.usable, "detail": self.detail}


def _import_version(module: str) -> tuple[str | None, str]:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means "not usable", with its reason
        return None, f"`import {module}` failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    return getattr(mod, "__version__", "unknown version"), ""


def probe_backends() -> list[BackendStatus]:
    """Which inference paths work on this machine, and why not the others."""
    out = [BackendStatus("torch-cpu", True, f"torch {torch.__version__}; {cpu_description()}")]
    if torch.cuda.is_available():
        out.append(BackendStatus("torch-cuda", True, f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"))
    else:
        why = "torch has no CUDA build" if torch.version.cuda is None else "no CUDA GPU or driver found"
        out.append(BackendStatus("torch-cuda", False, why))

    ort_version, err = _import_version("onnxruntime")
    if ort_version is None:
        out.append(BackendStatus("onnxruntime", False, f"{err}; install with `pip install 'vdeblur[onnx]'`"))
    else:
        import onnxruntime

        detail = f"onnxruntime {ort_version}; providers: {', '.join(onnxruntime.get_available_providers())}"
        if _import_version("onnx")[0] is None:   # the model is exported for it on the fly, with onnx
            detail += "; runs --onnx files only: exporting the model needs onnx (`pip install 'vdeblur[onnx]'`)"
        out.append(BackendStatus("onnxruntime", True, detail))

    trt_version, err = _import_version("tensorrt")
    if trt_version is None:
        out.append(BackendStatus("tensorrt", False, f"{err}; install with `pip install 'vdeblur[tensorrt]'` on a machine with an NVIDIA GPU"))
    else:
        from .trt import MIN_VERSION, version_tuple

        if version_tuple(trt_version)[:2] < MIN_VERSION:
            out.append(BackendStatus("tensorrt", False, f"tensorrt {trt_version} is too old: the fused-attention plugin "
                                     f"needs {'.'.join(map(str, MIN_VERSION))} or later"))
        elif importlib.util.find_spec("triton") is None:
            out.append(BackendStatus("tensorrt", True, f"tensorrt {trt_version}; runs engines given with --engine, "
                                     "but building one needs triton (`pip install 'vdeblur[tensorrt]'`)"))
        else:
            out.append(BackendStatus("tensorrt", True, f"tensorrt {trt_version}; triton for building engines"))

    pycuda_version, err = _import_version("pycuda.driver")
    if pycuda_version is None:
        out.append(BackendStatus("pycuda", False, f"{err}; install with `pip install 'vdeblur[tensorrt]'` (needs the CUDA driver)"))
    else:
        try:
            import pycuda.driver as cuda

            cuda.init()
            n = cuda.Device.count()
            out.append(BackendStatus("pycuda", n > 0, f"pycuda, {n} CUDA device(s)" if n else "pycuda imported but no CUDA device"))
        except Exception as e:  # noqa: BLE001
            out.append(BackendStatus("pycuda", False, f"pycuda imported but CUDA init failed: {e}"))
    return out
