"""`vdeblur bench`: frames per second for each stage on its own and end to end, and how close the
model runs to this machine's peak.

Every stage is timed on its own (decode, yuv<->rgb conversion, model, encode) and then the real
pipeline runs end to end, so a user sees both where the time goes and what `vdeblur deblur` will
really do. Times are medians over repeats after warm-up runs, because the first call of a model
pays for kernel selection and memory allocation. The model's throughput is put against a large
matrix product timed on the spot in the same precision: that is the ceiling the convolutions can
hope for on this device, and the ratio says how much is left on the table.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import VdeblurError
from .hardware import DTYPES, cpu_bf16_kind, cpu_description, resolve_device, resolve_precision
from .network import ModelConfig, count_parameters, flops_per_frame

DEFAULT_SIZE = (640, 368)
DEFAULT_FRAMES = 24
STAGES = ("decode", "convert", "model", "encode", "end_to_end")


# --------------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    """Wall times of repeated runs of one stage, each run processing ``frames`` frames."""

    frames: int
    seconds: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fps(self) -> float:
        return self.frames / self.median_s

    def to_dict(self) -> dict:
        spread = (max(self.seconds) - min(self.seconds)) / self.median_s if len(self.seconds) > 1 else 0.0
        return {
            "frames_per_run": self.frames,
            "runs": len(self.seconds),
            "median_s": self.median_s,
            "ms_per_frame": 1e3 * self.median_s / self.frames,
            "fps": self.fps,
            "spread": spread,  # (max - min) / median: how noisy the machine was
            "runs_s": [round(s, 6) for s in self.seconds],
            **self.extra,
        }


def synchronizer(device: torch.device):
    """Host-side timing is only true once queued GPU work has finished."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_runs(fn, frames: int, repeats: int, warmup: int, sync=lambda: None) -> Timing:
    for _ in range(warmup):
        fn()
    sync()
    timing = Timing(frames)
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        timing.seconds.append(time.perf_counter() - t0)
    return timing


# --------------------------------------------------------------------------------------------------
# the device's peak: a large matrix product in the model's precision


def _product_as_mm(n: int, dtype, device):
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return (lambda: torch.mm(a, b)), 2 * n**3


def _product_as_conv1x1(n: int, dtype, device):
    """An n x n by n x n' product as a 1x1 convolution over n' ~ n pixels, channels_last.

    On CPUs torch sends fp32 ``mm`` to MKL, which on AMD runs a fraction of the rate oneDNN
    (the library that runs the model's convolutions) reaches; a 1x1 conv is a plain oneDNN GEMM.
    """
    side = int(n ** 0.5)
    rows, cols = side, n // side
    x = torch.randn(1, n, rows, cols, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    return (lambda: torch.nn.functional.conv2d(x, w)), 2 * n * n * rows * cols


class PeakProbe:
    """The fastest large matrix product torch runs here in one precision: the device's practical peak.

    Built once (picks the faster of ``mm`` and, on CPUs, the same product through oneDNN), then
    timed with :meth:`run` between the model's repeats, so both see the same machine load.
    """

    def __init__(self, device: torch.device, precision: str, n: int | None = None, seconds: float = 0.2):
        self.device, self.precision = device, precision
        self.n = n or (8192 if device.type == "cuda" else 2048)
        self.sync = synchronizer(device)
        dtype = DTYPES[precision]
        ways = {"mm": _product_as_mm}
        if device.type == "cpu":
            ways["conv1x1"] = _product_as_conv1x1
        self.first_tflops = {}
        best = None
        with torch.inference_mode(), self._tf32_like_convs():
            for name, make in ways.items():
                fn, flops = make(self.n, dtype, device)
                fn()
                once = self._time(fn, 1)
                self.first_tflops[name] = flops / once / 1e12
                if best is None or once * best[2] < best[1] * flops:   # higher flops/s wins
                    best = (name, once, flops, fn)
        self.via, once, self.flops_per_call, self._fn = best
        self.inner = max(1, int(seconds / once))   # calls per timed run: about ``seconds`` each
        self.seconds: list[float] = []

    def _tf32_like_convs(self):
        """fp32 on CUDA: cuDNN convs use TF32 by default but matmuls do not; the peak must match."""
        import contextlib

        if self.device.type != "cuda" or self.precision != "fp32":
            return contextlib.nullcontext()
        return _Tf32(torch.backends.cudnn.allow_tf32)

    def _time(self, fn, calls: int) -> float:
        self.sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        self.sync()
        return max(time.perf_counter() - t0, 1e-9)

    def run(self) -> None:
        with torch.inference_mode(), self._tf32_like_convs():
            self.seconds.append(self._time(self._fn, self.inner))

    @property
    def tflops(self) -> float:
        return self.flops_per_call * self.inner / statistics.median(self.seconds) / 1e12

    def to_dict(self) -> dict:
        return {"precision": self.precision, "size": self.n, "via": self.via, "tflops": self.tflops,
                "runs": len(self.seconds), "first_call_tflops_by_method": {k: round(v, 4) for k, v in self.first_tflops.items()}}


class _Tf32:
    """Temporarily set ``torch.backends.cuda.matmul.allow_tf32``."""

    def __init__(self, value: bool):
        self.value = value

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.value

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


# --------------------------------------------------------------------------------------------------
# memory


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def gpu_memory(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    return {"max_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "max_reserved_bytes": torch.cuda.max_memory_reserved(device),
            "total_bytes": torch.cuda.get_device_properties(device).total_memory}


def device_facts(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "description": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}",
                "cpu": cpu_description()}
    return {"type": "cpu", "name": platform.processor() or "cpu", "description": cpu_description(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "bf16": cpu_bf16_kind()}


# --------------------------------------------------------------------------------------------------
# the clip bench makes when it is given none


def synthetic_frames(width: int, height: int, frames: int, seed: int = 0):
    """Moving textured RGB frames: a panning multi-scale noise texture with a drifting gradient,
    so the encoder and decoder do realistic work (a flat or static clip would flatter them)."""
    rng = np.random.default_rng(seed)
    pan = 96  # the texture pans periodically, so memory does not grow with ``frames``
    tex_h, tex_w = height + pan, width + pan
    texture = np.zeros((tex_h, tex_w, 3), np.float32)
    for cell, weight in ((32, 0.5), (8, 0.3), (2, 0.2)):
        coarse = rng.random((tex_h // cell + 2, tex_w // cell + 2, 3), dtype=np.float32)
        texture += weight * np.kron(coarse, np.ones((cell, cell, 1), np.float32))[:tex_h, :tex_w]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(frames):
        oy, ox = (2 * i) % pan, (3 * i) % pan
        crop = texture[oy:oy + height, ox:ox + width]
        ramp = 0.5 + 0.5 * np.sin((xx + 5 * i) / 40.0 + yy / 60.0)
        img = 0.75 * crop + 0.25 * ramp[..., None]
        yield np.ascontiguousarray((img * 255).clip(0, 255).astype(np.uint8))


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """An H.264 yuv420p BT.709 clip like a user's, written with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        cc = stream.codec_context
        cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
        for rgb in synthetic_frames(width, height, frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# --------------------------------------------------------------------------------------------------
# the model: which weights, and the backend under test


def weights_source(weights: str | None, backend: str) -> tuple[str | None, str]:
    """(path or None for random weights, how to say it). Speed does not depend on weight values, so
    bench still runs, on random default-config weights, where no weights are shipped yet."""
    if weights:
        return weights, weights
    from .weights import default_weights

    entry = default_weights()
    if entry is not None and entry.path.is_file():
        return None, f"shipped default ({entry.name})"
    if backend not in ("auto", "torch"):
        return None, "backend's own model file"
    return None, "random initialisation of the paper's default config (no default weights shipped; speed does not depend on weight values)"


def open_model_backend(name: str, options, random_weights: bool):
    """The backend under test; the torch backend on a freshly initialised network when asked."""
    from .backends import open_backend

    if not random_weights:
        return open_backend(name, options)
    from .backends.torch_backend import TorchBackend
    from .network import build_model

    return TorchBackend(build_model(ModelConfig()), device=options.device, precision=options.precision,
                        compile=options.compile)
