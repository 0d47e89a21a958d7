"""`vdeblur bench`: frames per second for each stage on its own and end to end, and how close the
model runs to this machine's peak.

Every stage is timed on its own (decode, yuv<->rgb conversion, model, encode) and then the real
pipeline runs end to end, so a user sees both where the time goes and what `vdeblur deblur` will
really do. The pipeline also runs with the model left out (frames copied through): that rate is the
host's ceiling, so a slow end-to-end run says whether the model or the video I/O holds it back. Times are medians over repeats after warm-up runs, because the first call of a model
pays for kernel selection and memory allocation. The model's throughput is put against large
products timed on the spot in the same precision (the best of a matrix product and, on CPUs, the
same work through oneDNN): that is the ceiling the convolutions can hope for on this device, and
the ratio says how much is left on the table.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .backends import BackendOptions, torch_argv, torch_options
from .backends.base import Backend
from .ensemble import FlipEnsemble, check_copies
from .errors import VdeblurError, require_pyav
from .hardware import DTYPES, check_threads, cpu_bf16_kind, cpu_description, cpu_name, resolve_device, resolve_precision
from .network import ModelConfig, count_parameters, flops_per_frame
from .tiling import TiledBackend, check_tiling, format_tile

DEFAULT_SIZE = (640, 368)
DEFAULT_FRAMES = 24
STAGES = ("decode", "convert", "model", "encode", "pipeline", "end_to_end")
# Frames written before the steady rate counts: opening, the first frame's setup and the queues filling.
STEADY_AFTER = 0.25


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
        # One run has no spread to give: null, not a 0 that reads as perfectly steady.
        spread = (max(self.seconds) - min(self.seconds)) / self.median_s if len(self.seconds) > 1 else None
        return {
            "frames_per_run": self.frames,
            "runs": len(self.seconds),
            "median_s": self.median_s,
            "ms_per_frame": 1e3 * self.median_s / self.frames,
            "fps": self.fps,
            "best_s": min(self.seconds),   # steadier than the median on a loaded machine
            "best_fps": self.frames / min(self.seconds),
            "spread": spread,  # (max - min) / median: how noisy the machine was
            "runs_s": [round(s, 6) for s in self.seconds],
            **self.extra,
        }


def synchronizer(device: torch.device):
    """Host-side timing is only true once queued GPU work has finished."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@contextmanager
def collected_first():
    """Python's cyclic garbage collector run before a timed run and paused during it, as timeit does:
    a collection of a heap that holds torch and PyAV takes a tenth of a second, and it fell into
    whichever run crossed its threshold (a 7 ms run of the copy-only pipeline timed at 127 ms)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_runs(fn, frames: int, repeats: int, warmup: int, sync=lambda: None) -> Timing:
    for _ in range(warmup):
        fn()
    sync()
    timing = Timing(frames)
    for _ in range(repeats):
        with collected_first():
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


def _product_as_conv5x5(n: int, dtype, device):
    """A 64 -> 64 channel 5x5 convolution over n x 28.75 pixels (184x320 for n = 2048), channels_last:
    an implicit GEMM (K = 1600) like the model's own layers. With fp32 on CPUs oneDNN runs it near
    the FMA peak while plain fp32 GEMMs of any shape stay at about half of it."""
    rows, cols = 184 * n // 2048 or 8, 320
    x = torch.randn(1, 64, rows, cols, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 5, 5, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    return (lambda: torch.nn.functional.conv2d(x, w, padding=2)), 2 * rows * cols * 64 * 64 * 25


class PeakProbe:
    """The device's practical peak in one precision: the fastest of a few large products torch runs here.

    ``mm`` is the plain matrix product; on CPUs the probe also times the same work through oneDNN
    (the library that runs the model), as a 1x1 and as a 5x5 convolution. All are timed with
    :meth:`run` between the model's repeats, so they see the same machine load as the model.
    """

    def __init__(self, device: torch.device, precision: str, n: int | None = None, seconds: float = 0.3,
                 clock=time.perf_counter):
        self.device, self.precision, self.clock = device, precision, clock
        self.n = n or (8192 if device.type == "cuda" else 2048)
        self.sync = synchronizer(device)
        dtype = DTYPES[precision]
        ways = {"mm": _product_as_mm}
        if device.type == "cpu":
            ways["conv1x1"] = _product_as_conv1x1
            ways["conv5x5"] = _product_as_conv5x5
        self.methods = {}   # name -> (fn, flops per call, calls per timed run)
        with torch.inference_mode(), self._tf32_like_convs():
            for name, make in ways.items():
                fn, flops = make(self.n, dtype, device)
                fn()
                once = min(self._time(fn, 1) for _ in range(2))
                self.methods[name] = (fn, flops, max(1, int(seconds / len(ways) / once)))
        self.seconds: dict[str, list[float]] = {name: [] for name in self.methods}

    def _tf32_like_convs(self):
        """fp32 on CUDA: cuDNN convs use TF32 by default but matmuls do not; the peak must match."""
        import contextlib

        if self.device.type != "cuda" or self.precision != "fp32":
            return contextlib.nullcontext()
        return _Tf32(torch.backends.cudnn.allow_tf32)

    def _time(self, fn, calls: int) -> float:
        self.sync()
        t0 = self.clock()
        for _ in range(calls):
            fn()
        self.sync()
        return max(self.clock() - t0, 1e-9)

    def run(self) -> None:
        with torch.inference_mode(), self._tf32_like_convs():
            for name, (fn, _, calls) in self.methods.items():
                self.seconds[name].append(self._time(fn, calls))

    def by_method(self) -> dict[str, float]:
        """Median TFLOP/s of each way of computing the product."""
        return {name: flops * calls / statistics.median(self.seconds[name]) / 1e12
                for name, (_, flops, calls) in self.methods.items()}

    @property
    def via(self) -> str:
        rates = self.by_method()
        return max(rates, key=rates.get)

    @property
    def tflops(self) -> float:
        return max(self.by_method().values())

    @property
    def mm_tflops(self) -> float:
        return self.by_method()["mm"]

    def to_dict(self) -> dict:
        return {"precision": self.precision, "size": self.n, "via": self.via, "tflops": self.tflops,
                "mm_tflops": self.mm_tflops, "runs": len(self.seconds["mm"]),
                "tflops_by_method": {k: round(v, 4) for k, v in self.by_method().items()}}


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
    """Peak resident set size of this process so far.

    Linux: VmHWM of /proc/self/status. Not ``ru_maxrss``: that survives fork + exec, so a child
    started by a big parent (the memory check) would report the parent's peak. Windows: the peak
    working set. Elsewhere ``ru_maxrss`` (the ``resource`` module is POSIX-only, so it is imported here).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "win32":
        return _windows_peak_working_set()
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024   # KiB on Linux, bytes on macOS


def _process_memory_counters():
    """psapi's PROCESS_MEMORY_COUNTERS: two DWORDs, then eight SIZE_T counters."""
    import ctypes

    sizes = ("PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage", "QuotaPagedPoolUsage",
             "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage")

    class Counters(ctypes.Structure):
        _fields_ = [("cb", ctypes.c_uint32), ("PageFaultCount", ctypes.c_uint32),
                    *((name, ctypes.c_size_t) for name in sizes)]

    return Counters


def _windows_peak_working_set() -> int:
    import ctypes

    counters_type = _process_memory_counters()
    counters = counters_type(cb=ctypes.sizeof(counters_type))
    kernel32, psapi = ctypes.WinDLL("kernel32"), ctypes.WinDLL("psapi")
    kernel32.GetCurrentProcess.restype = ctypes.c_void_p
    psapi.GetProcessMemoryInfo.argtypes = [ctypes.c_void_p, ctypes.POINTER(counters_type), ctypes.c_uint32]
    if not psapi.GetProcessMemoryInfo(kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb):
        raise OSError(ctypes.get_last_error(), "GetProcessMemoryInfo failed")
    return counters.PeakWorkingSetSize


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
    return {"type": "cpu", "name": cpu_name(), "description": cpu_description(),
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


def _library_versions() -> dict:
    """What else the numbers depend on: PyAV and its FFmpeg, numpy, and ONNX Runtime where present."""
    import av

    found = {"pyav": av.__version__, "ffmpeg": av.ffmpeg_version_info, "numpy": np.__version__}
    try:
        import onnxruntime
        found["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return {k: (str(v) if v is not None else None) for k, v in found.items()}


def weights_source(weights: str | None, backend: str) -> tuple[str | None, str]:
    """(path or None for random weights, how to say it). Speed does not depend on weight values, so
    bench still runs, on random default-config weights, where no weights are shipped yet."""
    if weights:
        return weights, weights
    from .weights import default_weights

    entry = default_weights()
    if entry is not None and entry.path.is_file():
        return None, f"shipped default ({entry.name}, sha256 {entry.sha256[:12]})"
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

    return TorchBackend.from_options(options, model=build_model(ModelConfig()))


# --------------------------------------------------------------------------------------------------
# the stages, each through the pipeline's own reader and writer


def decode_frames_from(reader, limit: int) -> list:
    frames = []
    for frame in reader.video_frames():
        frames.append(frame)
        if len(frames) >= limit:
            break
    return frames


def decode_frames(path: Path, limit: int) -> list:
    """Demux + decode the first ``limit`` frames with the pipeline's reader settings (no RGB yet)."""
    from .video import VideoReader

    reader = VideoReader(path)
    try:
        return decode_frames_from(reader, limit)
    finally:
        reader.close()


@dataclass
class ClipStages:
    """Decode, conversion and encode timings for one clip, and its RGB frames for the model stage."""

    decode: Timing
    convert: Timing
    encode: Timing
    rgb: list


def measure_clip_stages(path: Path, frames: int, repeats: int, warmup: int, workdir: Path, encode_opts: dict) -> ClipStages:
    from .video import VideoReader, VideoWriter

    decode = time_runs(lambda: decode_frames(path, frames), frames, repeats, warmup)
    decoded = decode_frames(path, frames)
    n = len(decoded)
    decode.frames = n
    reader = VideoReader(path)
    try:
        out_path = workdir / "encode-stage.mp4"
        writer = VideoWriter(out_path, reader, **encode_opts)
        try:
            rgb = [reader.to_rgb(f) for f in decoded]
            yuv_to_rgb = time_runs(lambda: [reader.to_rgb(f) for f in decoded], n, repeats, warmup)
            rgb_to_yuv = time_runs(lambda: [writer.to_frame(d.image) for d in rgb], n, repeats, warmup)
        finally:
            writer.abort()
        yuv = [writer.to_frame(d.image) for d in rgb]

        def encode_once():
            w = VideoWriter(out_path, reader, **encode_opts)
            try:
                for f, d in zip(yuv, rgb):
                    w.encode_frame(f, d.pts, d.duration, d.time_base)
                w.close()
            except BaseException:
                w.abort()
                raise

        encode = time_runs(encode_once, n, repeats, warmup)
    finally:
        reader.close()
    out_path.unlink(missing_ok=True)
    convert = Timing(n, [a + b for a, b in zip(yuv_to_rgb.seconds, rgb_to_yuv.seconds)],
                     {"yuv_to_rgb_ms_per_frame": 1e3 * yuv_to_rgb.median_s / n,
                      "rgb_to_yuv_ms_per_frame": 1e3 * rgb_to_yuv.median_s / n})
    return ClipStages(decode, convert, encode, [d.image for d in rgb])


# --------------------------------------------------------------------------------------------------
# the model stage: every (size, precision) variant interleaved with the peak probes


@dataclass
class ModelVariant:
    width: int
    height: int
    precision: str
    runner: object           # a Backend (possibly tiled)
    batch: np.ndarray        # uint8 (N, H, W, 3)
    flops_per_frame: int
    timing: Timing | None = None
    first_call_s: float = 0.0
    gpu: dict | None = None

    def to_dict(self, peak: "PeakProbe | None") -> dict:
        d = self.timing.to_dict()
        tflops = self.flops_per_frame * self.timing.fps / 1e12
        backend = self.runner.describe()
        d.update({"size": [self.width, self.height], "precision": self.precision, "batch": len(self.batch),
                  "flops_per_frame": self.flops_per_frame, "tflops": tflops,
                  "first_call_s": self.first_call_s, "backend": backend})
        if backend.get("compile"):
            # torch.compile works on the first call of a shape: what it cost beyond a steady call.
            d["compile_s"] = max(0.0, self.first_call_s - self.timing.median_s)
        if peak is not None:
            d["peak_tflops"] = peak.tflops
            d["fraction_of_peak"] = tflops / peak.tflops
            d["fraction_of_mm_peak"] = tflops / peak.mm_tflops
        if self.gpu:
            d["gpu_memory"] = self.gpu
        return d


def _peak_applies(described: dict, device: torch.device, precision: str) -> bool:
    """Whether torch's product in this precision is a ceiling for this backend: not for ONNX Runtime
    in fp16 on a CPU, whose kernels are not torch's (a CPU without fp16 arithmetic makes torch's slow)."""
    return not (described.get("backend") == "onnxruntime" and precision == "fp16" and device.type == "cpu")


def measure_models(variants: list[ModelVariant], peaks: dict, device: torch.device, repeats: int, warmup: int) -> None:
    """Warm every variant up, then time them round-robin with a peak probe per round: a machine
    shared with other work slows all of them alike instead of whichever ran during a busy spell."""
    sync = synchronizer(device)
    for v in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(max(warmup, 1)):
            t0 = time.perf_counter()
            v.runner.run(v.batch)
            sync()
            if i == 0:
                v.first_call_s = time.perf_counter() - t0
        v.gpu = gpu_memory(device)
        v.timing = Timing(len(v.batch))
    gpu_ms: dict[int, list[float]] = {id(v): [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            events = _cuda_events(device)
            with collected_first():
                t0 = time.perf_counter()
                if events:
                    events[0].record()
                v.runner.run(v.batch)
                if events:
                    events[1].record()
                sync()
                v.timing.seconds.append(time.perf_counter() - t0)
            if events:
                gpu_ms[id(v)].append(events[0].elapsed_time(events[1]))
        for probe in peaks.values():
            probe.run()
    for v in variants:
        if gpu_ms[id(v)]:   # device-side time of the same calls (uploads, kernels, downloads)
            v.timing.extra["gpu_event_ms_per_frame"] = statistics.median(gpu_ms[id(v)]) / len(v.batch)


def _cuda_events(device: torch.device):
    if device.type != "cuda":
        return None
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def model_batch(frames: list, batch: int) -> np.ndarray:
    return np.stack([frames[i % len(frames)] for i in range(batch)])


# --------------------------------------------------------------------------------------------------
# end to end, and memory against video length


class PassThrough(Backend):
    """The model left out: each batch is copied through, so the pipeline's rate is all the host's."""

    name = "pass-through"
    accepts_uint16 = True

    def run(self, frames: np.ndarray) -> np.ndarray:
        self.check_frames(frames)
        return frames.copy()

    def describe(self) -> dict:
        return {"backend": self.name, "device": "cpu", "precision": None}


def work_per_frame(cfg, height: int, width: int, runner) -> float:
    """FLOPs the model does per frame through ``runner``: a tiled one runs every overlapping tile
    (6 tiles of 64x64 for 128x96 are twice the whole frame's work), an ensemble every mirror image."""
    if isinstance(runner, FlipEnsemble):
        return len(runner.mirrors) * work_per_frame(cfg, height, width, runner.inner)
    shapes = runner.tile_shapes(height, width) if isinstance(runner, TiledBackend) else [(height, width)]
    return sum(flops_per_frame(cfg, h, w) for h, w in shapes)


def steady_fps(times: list[float], batch: int = 1) -> float | None:
    """Frames per second between the frame at STEADY_AFTER of the run and the last batch, from the
    times each was handed to the encoder: the rate a long video settles at, without the run's fixed
    costs (opening, the first frame, the encoder's flush), which weigh on a short clip's average. The
    last batch is left out: at the end nothing is computed after it, so it comes with no wait."""
    # Between ends of batches: a batch's frames are handed over together, so a window that starts
    # or ends inside one counted frames that took no time (batch 4 of 8 frames read 5500 fps).
    ends = list(range(batch - 1, len(times) - 1, batch))   # every batch but the one holding the last frame
    later = [e for e in ends if e >= int(len(times) * STEADY_AFTER)]
    if len(later) < 2:
        return None
    first, last = later[0], later[-1]
    span = times[last] - times[first]
    return (last - first) / span if span > 0 else None


def measure_end_to_end(clip: Path, frames: int, rate, runner, batch: int, repeats: int, workdir: Path, encode_opts: dict,
                       deinterlace: str = "auto") -> Timing:
    """The real `vdeblur deblur` pipeline (threads, queues, writer) on an already warm backend, with
    the steady rate and the time to the first frame written (opening the clip included) beside each
    run's average (which leaves the opening out)."""
    from .pipeline import deblur_video

    duration = frames / float(rate) if rate else None
    out = workdir / "end-to-end.mp4"
    timing, steady, first = None, [], []
    for _ in range(repeats):
        times: list[float] = []
        with collected_first():
            started = time.perf_counter()
            report = deblur_video(clip, out, backend=runner, batch=batch, duration=duration, overwrite=True,
                                  quiet=True, verify=False, progress=lambda done, total: times.append(time.perf_counter()),
                                  deinterlace=deinterlace, **encode_opts)
        timing = timing or Timing(report.frames)
        timing.seconds.append(report.seconds)
        first.append(times[0] - started if times else None)
        steady.append(steady_fps(times[:report.frames], batch))
        timing.extra["deinterlaced_frames"] = report.deinterlaced_frames
        # A frame equal to the one before gets its result without the model (deblur's default): an
        # input of repeated frames ran 5x faster than the model can, which only this count explains.
        timing.extra["repeated_frames"] = report.repeated_frames
    out.unlink(missing_ok=True)
    if None not in steady:
        timing.extra["steady_fps"] = statistics.median(steady)
    if None not in first:
        timing.extra["first_frame_s"] = statistics.median(first)
    return timing


def memory_check(clips: dict[int, Path], argv_common: list[str]) -> dict:
    """Peak RSS (and GPU memory) of a fresh process running the pipeline on each clip length:
    a streaming pipeline's peak does not grow with the number of frames."""
    import subprocess

    runs = {}
    for frames, clip in clips.items():
        cmd = [sys.executable, "-m", "vdeblur", "bench", str(clip), "--frames", str(frames), "--stages", "end_to_end",
               "--repeats", "1", "--warmup", "0", "--json", *argv_common]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise VdeblurError(f"memory check with {frames} frames failed: {tail}")
        child = json.loads(proc.stdout)
        e2e = child["sizes"][0]["stages"]["end_to_end"]
        runs[str(frames)] = {"frames": e2e["frames_per_run"], "peak_rss_bytes": child["peak_rss_bytes"],
                             "fps": e2e["fps"], "gpu_memory": child.get("gpu_memory")}
    lengths = sorted(runs, key=int)
    short, long = runs[lengths[0]]["peak_rss_bytes"], runs[lengths[-1]]["peak_rss_bytes"]
    return {"runs": runs, "growth_bytes": long - short, "growth_ratio": long / short}


# --------------------------------------------------------------------------------------------------
# the whole run


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise VdeblurError(f"{option} {text!r}: expected WIDTHxHEIGHT, e.g. 640x368") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise VdeblurError(f"{option} {text!r}: width and height must be even and at least 16")
    return w, h


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run_bench(args) -> dict:
    if args.frames < 1 or args.repeats < 1 or args.warmup < 0 or args.batch < 1 or args.e2e_repeats < 0:
        raise VdeblurError("--frames, --repeats and --batch must be >= 1, --warmup and --e2e-repeats >= 0")
    stages = _split(args.stages)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise VdeblurError(f"--stages: unknown {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
    check_threads(args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not stages:
        raise VdeblurError(f"--stages: give at least one of {', '.join(STAGES)}")
    parse_size(args.memory_size, "--memory-size")   # a mistake found now, not after the other stages
    device = resolve_device(args.device)
    requested = list(dict.fromkeys(_split(args.precision)))
    if not requested:
        raise VdeblurError("--precision: give at least one of auto, fp32, bf16, fp16")
    for p in requested:
        # An unknown name fails before any work; torch's own limits (no fp16 on a CPU) are torch's:
        # ONNX Runtime runs an fp16 graph on a CPU.
        resolve_precision(p if args.backend in ("auto", "torch") or p != "fp16" else "fp32", device)
    if device.type == "cpu" and "bf16" in requested and not cpu_bf16_kind():
        print("vdeblur: warning: this CPU has no native bf16; bf16 is emulated and may be hundreds of times "
              "slower than fp32", file=sys.stderr)
    weights, weights_note = weights_source(args.weights, args.backend)
    random_weights = weights is None and weights_note.startswith("random")
    encode_opts = {"codec": args.codec, "crf": args.crf, "preset": args.preset}
    tile = check_tiling(args.tile, args.tile_overlap)   # (width, height) or None, checked before any work
    check_copies(args.ensemble)
    cfg = ModelConfig()
    from .weights import default_weights

    shipped = default_weights()
    own_file = args.onnx or getattr(args, "engine", None)   # the model file the backend brings
    if args.weights or (not random_weights and not own_file and shipped is not None):   # the checkpoint's own config
        from .checkpoint import read_checkpoint

        cfg = read_checkpoint(args.weights or shipped.path).config
    with torch.device("meta"):
        from .network import build_model

        params = count_parameters(build_model(cfg))

    result = {
        "vdeblur": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "libraries": _library_versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_facts(device),
        "weights": weights_note,
        "model": {"config": cfg.to_dict(), "parameters": params},
        "settings": {"backend": args.backend, "precisions": None, "batch": args.batch, "repeats": args.repeats,
                     "e2e_repeats": args.e2e_repeats or args.repeats,
                     "warmup": args.warmup, **torch_options(args), "tile": list(tile) if tile else None,
                     "tile_overlap": args.tile_overlap, "ensemble": args.ensemble, "threads": args.threads or torch.get_num_threads(),
                     "stages": sorted(stages, key=STAGES.index), "frames": args.frames, "deinterlace": args.deinterlace,
                     "encode": encode_opts},
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="vdeblur-bench-") as tmp:
        workdir = Path(tmp)
        clips = _clips(args, workdir)
        runners = {}
        for precision in requested:   # "auto" is the backend's own pick (ONNX Runtime's is fp32 on a CPU)
            options = BackendOptions(weights=weights, device=args.device, precision=precision, batch=args.batch,
                                     engine=args.engine, onnx=args.onnx, threads=args.threads, **torch_options(args))
            backend = open_model_backend(args.backend, options, random_weights)
            if tile:
                backend = TiledBackend(backend, tile, args.tile_overlap)
            if args.ensemble > 1:
                backend = FlipEnsemble(backend, args.ensemble)
            runners.setdefault(backend.describe()["precision"], backend)
        precisions = list(runners)
        result["settings"]["precisions"] = precisions
        result["backend"] = runners[precisions[0]].describe()
        try:
            per_size, variants = [], []
            for clip in clips:
                entry = {"size": [clip["width"], clip["height"]], "input": clip["label"], "stages": {}}
                rgb = None
                if {"decode", "convert", "encode"} & set(stages):
                    cs = measure_clip_stages(clip["path"], clip["frames"], args.repeats, args.warmup, workdir, encode_opts)
                    for name in ("decode", "convert", "encode"):
                        if name in stages:
                            entry["stages"][name] = getattr(cs, name).to_dict()
                    rgb = cs.rgb
                if "model" in stages:
                    rgb = rgb or _first_rgb_images(clip["path"], args.batch)
                    for precision in precisions:
                        fl = work_per_frame(cfg, clip["height"], clip["width"], runners[precision])
                        variants.append(ModelVariant(clip["width"], clip["height"], precision, runners[precision],
                                                     model_batch(rgb, args.batch), fl))
                per_size.append((clip, entry))
            peaks = {p: PeakProbe(device, p) for p in precisions
                     if _peak_applies(runners[p].describe(), device, p)} if "model" in stages else {}
            measure_models(variants, peaks, device, args.repeats, args.warmup)
            for clip, entry in per_size:
                models = [v for v in variants if (v.width, v.height) == (clip["width"], clip["height"])]
                if models:
                    entry["stages"]["model"] = {v.precision: v.to_dict(peaks.get(v.precision)) for v in models}
                if "pipeline" in stages:
                    entry["stages"]["pipeline"] = measure_end_to_end(
                        clip["path"], clip["frames"], clip["rate"], PassThrough(), args.batch,
                        args.e2e_repeats or args.repeats, workdir, encode_opts, clip["deinterlace"]).to_dict()
                if "end_to_end" in stages:
                    runner = runners[precisions[0]]
                    if "model" not in stages:   # warm the backend up so the first frame's setup is not counted
                        for _ in range(args.warmup):
                            runner.run(np.stack(_first_rgb_images(clip["path"], args.batch)))
                    e2e = measure_end_to_end(clip["path"], clip["frames"], clip["rate"], runner, args.batch,
                                             args.e2e_repeats or args.repeats, workdir, encode_opts, clip["deinterlace"])
                    d = e2e.to_dict()
                    d["precision"] = precisions[0]
                    model = entry["stages"].get("model", {}).get(precisions[0])
                    if model:
                        d["fraction_of_model_fps"] = d["fps"] / model["fps"]
                        if d.get("steady_fps"):
                            d["steady_fraction_of_model_fps"] = d["steady_fps"] / model["fps"]
                    if "pipeline" in entry["stages"]:
                        d["fraction_of_pipeline_fps"] = d["fps"] / entry["stages"]["pipeline"]["fps"]
                    entry["stages"]["end_to_end"] = d
                result["sizes"].append(entry)
            result["peaks"] = {p: probe.to_dict() for p, probe in peaks.items()}
        finally:
            for runner in runners.values():
                runner.close()
        if args.memory_check:
            result["memory_check"] = _memory_check(args, workdir, precisions[0])
    result["peak_rss_bytes"] = peak_rss_bytes()
    if device.type == "cuda":
        result["gpu_memory"] = gpu_memory(device)
    return result


def _first_rgb_images(path: Path, n: int) -> list[np.ndarray]:
    from .video import VideoReader

    reader = VideoReader(path)
    try:
        return [reader.to_rgb(frame).image for frame in decode_frames_from(reader, n)]
    finally:
        reader.close()


def _clips(args, workdir: Path) -> list[dict]:
    """The user's INPUT, or a generated clip at each --size."""
    from .video import VideoReader

    if args.input:
        if args.size:
            raise VdeblurError("give INPUT or --size, not both (--size is for the generated clip)")
        reader = VideoReader(args.input)
        info = reader.info
        reader.close()
        frames = min(args.frames, info.frames) if info.frames else args.frames
        return [{"path": Path(args.input), "width": info.width, "height": info.height, "frames": frames,
                 "rate": info.rate, "label": str(args.input), "deinterlace": args.deinterlace or "auto"}]
    clips = []
    sizes = _split(f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}" if args.size is None else args.size)
    if not sizes:   # "--size ," measured nothing and said nothing
        raise VdeblurError(f"--size {args.size!r}: give at least one WIDTHxHEIGHT, e.g. 640x368")
    for text in sizes:
        w, h = parse_size(text)
        path = make_clip(workdir / f"clip-{w}x{h}.mp4", w, h, args.frames)
        # Progressive by making: idet reads its fine moving texture as woven fields, and "auto" would
        # time bwdif on every frame, a path progressive video never takes.
        clips.append({"path": path, "width": w, "height": h, "frames": args.frames, "rate": 30,
                      "label": f"generated {w}x{h} H.264 clip, {args.frames} frames", "deinterlace": args.deinterlace or "off"})
    return clips


def _memory_check(args, workdir: Path, precision: str) -> dict:
    w, h = parse_size(args.memory_size, "--memory-size")
    lengths = (30, 300)
    clips = {n: make_clip(workdir / f"memory-{n}.mp4", w, h, n) for n in lengths}
    common = ["--backend", args.backend, "--device", args.device, "--precision", precision, "--batch", str(args.batch)]
    for flag, value in (("--weights", args.weights), ("--engine", args.engine), ("--onnx", args.onnx),
                        ("--threads", args.threads), ("--tile", args.tile or None), ("--tile-overlap", args.tile_overlap),
                        ("--codec", args.codec), ("--crf", args.crf), ("--preset", args.preset),
                        ("--deinterlace", args.deinterlace or "off"),   # the clips are generated: progressive
                        ("--ensemble", args.ensemble if args.ensemble > 1 else None)):
        if value is not None and value != "":
            common += [flag, str(value)]
    common += torch_argv(torch_options(args))
    out = memory_check(clips, common)
    out["size"] = [w, h]
    return out


# --------------------------------------------------------------------------------------------------
# the `bench` subcommand


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _steady_note(d: dict) -> str:
    note = f"; steady {d['steady_fps']:.2f} fps" if d.get("steady_fps") else ""
    return note + (f", first frame {d['first_frame_s']:.2f} s" if d.get("first_frame_s") is not None else "")


def format_table(r: dict) -> str:
    s = r["settings"]
    extras = (f", torch.compile {s.get('compile_mode') or 'default'}" if s["compile"] else "")
    extras += ", fused attention" if s.get("fused_attention") else ""
    extras += ", CUDA graphs" if s.get("cuda_graphs") else ""
    extras += f", {format_tile(s['tile'])} tiles" if s["tile"] else ""
    extras += f", an ensemble of {s['ensemble']} mirror images per frame" if s.get("ensemble", 1) > 1 else ""
    lines = [
        f"vdeblur {r['vdeblur']} bench, torch {r['torch']}, {r['date']}",
        f"device: {r['device']['description']}",
        f"backend: {r['backend'].get('backend')} on {r['backend'].get('device')}, batch {s['batch']}{extras}",
        f"weights: {r['weights']}",
        f"times: medians of {s['repeats']} runs" + (f" ({s['e2e_repeats']} of the whole pipeline)" if any(
            {"pipeline", "end_to_end"} & set(e["stages"]) for e in r["sizes"]) else "") + f" after {s['warmup']} warm-up run(s)",
    ]
    for p, peak in r.get("peaks", {}).items():
        ways = ", ".join(f"{k} {v:.3f}" for k, v in peak["tflops_by_method"].items())
        lines.append(f"peak {p}: {peak['tflops']:.3f} TFLOP/s (best of torch's: {ways}; another backend's "
                     f"kernels can beat it)")
    for entry in r["sizes"]:
        w, h = entry["size"]
        lines += ["", f"{w}x{h} ({entry['input']})",
                  f"  {'stage':<22}{'ms/frame':>11}{'fps':>10}{'spread':>8}  notes"]
        st = entry["stages"]
        rows = []
        for name in ("decode", "convert", "encode"):
            if name in st:
                note = ""
                if name == "convert":
                    note = f"yuv->rgb {st[name]['yuv_to_rgb_ms_per_frame']:.2f} + rgb->yuv {st[name]['rgb_to_yuv_ms_per_frame']:.2f} ms"
                if name == "encode":
                    e = s["encode"]
                    note = f"{e['codec']}" + (f" crf {e['crf']:g}" if e["crf"] is not None else "") + (f" {e['preset']}" if e["preset"] else "")
                rows.append((name, st[name], note))
        for p, m in st.get("model", {}).items():
            note = f"{m['flops_per_frame'] / 1e9:.3g} GFLOP/frame, {m['tflops']:.3f} TFLOP/s"
            if "fraction_of_peak" in m:
                note += f", {100 * m['fraction_of_peak']:.0f}% of {p} peak ({100 * m['fraction_of_mm_peak']:.0f}% of mm)"
            if "gpu_memory" in m:
                note += f", GPU {_gib(m['gpu_memory']['max_allocated_bytes'])}"
            if "gpu_event_ms_per_frame" in m:
                note += f", CUDA events {m['gpu_event_ms_per_frame']:.2f} ms/frame"
            note += f"; first call {m['first_call_s']:.1f} s"
            if "compile_s" in m:
                note += f" (compile {m['compile_s']:.1f} s)"
            rows.append((f"model {p}", m, note))
        if "pipeline" in st:
            rows.append(("pipeline, no model", st["pipeline"], "the host's ceiling: decode, conversions, encode, "
                         "threads" + _steady_note(st["pipeline"])))
        if "end_to_end" in st:
            e = st["end_to_end"]
            note = f"{e['precision']}, real pipeline"
            if "fraction_of_model_fps" in e:
                note += f", {100 * e['fraction_of_model_fps']:.0f}% of model-only fps"
                if e["fraction_of_model_fps"] > 1.1 and not e.get("repeated_frames"):   # the pipeline holds the model
                    note += " (faster than the model alone cannot be: the machine was busier during one of them)"
            if "fraction_of_pipeline_fps" in e:
                note += f", {100 * e['fraction_of_pipeline_fps']:.0f}% of the ceiling"
            if e.get("repeated_frames"):
                note += f"; {e['repeated_frames']} repeated frames reused the result before them"
            rows.append(("end to end", e, note + _steady_note(e)))
        for name, d, note in rows:
            spread = f"{100 * d['spread']:>7.0f}%" if d["spread"] is not None else f"{'-':>8}"
            lines.append(f"  {name:<22}{d['ms_per_frame']:>11.2f}{d['fps']:>10.2f}{spread}  {note}")
    mc = r.get("memory_check")
    if mc:
        runs = "; ".join(f"{v['frames']} frames: {_gib(v['peak_rss_bytes'])}" for v in mc["runs"].values())
        lines += ["", f"memory ({mc['size'][0]}x{mc['size'][1]}, peak RSS of a fresh process): {runs}; "
                      f"growth {mc['growth_bytes'] / 2**20:+.1f} MiB ({100 * (mc['growth_ratio'] - 1):+.1f}%)"]
    lines.append(f"peak RSS of this run: {_gib(r['peak_rss_bytes'])}")
    return "\n".join(lines)


def register(subparsers) -> None:
    from .backends import BACKENDS, add_torch_arguments

    p = subparsers.add_parser(
        "bench", help="frames per second per stage and end to end, and the model's share of the device's peak",
        description="Time decode, yuv<->rgb conversion, the model and encode on their own, then the "
                    "pipeline with the model left out (the host's ceiling) and the real pipeline end to end "
                    "(medians over repeats, warm-up excluded). Without INPUT a clip is "
                    "generated. Lists (640x368,1280x720 / fp32,bf16) are measured side by side in one run.")
    p.add_argument("input", nargs="?", metavar="INPUT", help="video to measure on (default: a generated clip)")
    p.add_argument("--size", metavar="WxH[,WxH...]",
                   help=f"generated clip size(s) (default: {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, metavar="N",
                   help=f"frames per clip, or the first N frames of INPUT (default: {DEFAULT_FRAMES})")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="inference backend (default: auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", metavar="P[,P...]",
                   help="auto, fp32, bf16, fp16, or a list measured side by side; the first one runs end to end")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="frames per model call (default: 1)")
    p.add_argument("--repeats", type=int, default=3, metavar="R", help="timed runs per stage (default: 3)")
    p.add_argument("--e2e-repeats", type=int, default=0, metavar="R",
                   help="runs of the pipeline and end-to-end stages over the whole clip (default: --repeats); each is already many frames")
    p.add_argument("--warmup", type=int, default=1, metavar="W",
                   help="untimed runs before timing (default: 1; the model stage makes at least one, its first call)")
    p.add_argument("--deinterlace", choices=("auto", "tff", "bff", "off"),
                   help="as deblur's, for the pipeline and end to end (default: auto for INPUT, off for the "
                        "generated clip, which is progressive)")
    p.add_argument("--stages", default=",".join(STAGES), metavar="S[,S...]", help=f"which stages (default: all: {','.join(STAGES)})")
    p.add_argument("--weights", metavar="PATH", help="checkpoint (default: shipped weights, else random ones)")
    add_torch_arguments(p)
    p.add_argument("--tile", metavar="N|WxH", help="run the model on N x N or W x H tiles")
    p.add_argument("--tile-overlap", type=int, metavar="M", help="tile overlap (default: 32, less for tiles too small for it)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="measure `deblur --ensemble N`: the model on N mirror images of each frame (1, 2 or 4)")
    p.add_argument("--threads", type=int, default=0, metavar="T",
                   help="CPU threads for the model, torch or ONNX Runtime (default: one per core)")
    p.add_argument("--engine", metavar="PATH", help="TensorRT engine file (tensorrt backend)")
    p.add_argument("--onnx", metavar="PATH", help="ONNX model file (onnxruntime backend)")
    p.add_argument("--codec", default="libx264", help="encoder for the encode and end-to-end stages (default: libx264)")
    p.add_argument("--crf", type=float, help="encoder crf (default: the pipeline's)")
    p.add_argument("--preset", help="encoder preset (default: the encoder's)")
    p.add_argument("--memory-check", action="store_true",
                   help="also run the pipeline on 30 and 300 frames in fresh processes and compare their peak RSS")
    p.add_argument("--memory-size", default="128x128", metavar="WxH", help="frame size for --memory-check (default: 128x128)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    require_pyav()   # every stage reads a real clip, made and decoded through the pipeline's own I/O
    result = run_bench(args)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
