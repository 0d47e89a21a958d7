"""The PyTorch backend: the reference path on CPU and CUDA, and the fallback when nothing faster loads."""

from __future__ import annotations

import copy
import importlib.util
import sys

import numpy as np
import torch

from ..errors import VdeblurError
from ..hardware import DTYPES, resolve_device, resolve_precision
from ..network import DeblurNet
from .base import Backend, Pending

# Full scale of each integer frame type the pipeline hands over (as torch types, after upload).
_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}


class TorchBackend(Backend):
    """Runs ``DeblurNet.restore`` on uint8 (or uint16) NHWC batches.

    Frames are normalised on the device they run on (on CUDA the upload is the raw integer frame
    from pinned memory: 4x fewer bytes than float32), the network runs channels_last under
    ``inference_mode``, and the result is rounded back to the input's integer type. On CUDA,
    ``submit`` queues a batch on upload/compute/download streams and returns, so the pipeline's
    next batch is stacked, uploaded and launched while this one computes.
    """

    name = "torch"
    accepts_uint16 = True

    def __init__(self, model: DeblurNet, device: str = "auto", precision: str = "auto",
                 compile: bool = False, weights: str | None = None, fused_attention: bool | None = None,
                 compile_mode: str | None = None, cuda_graphs: bool | None = None):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.weights = weights
        self.compile_mode = compile_mode or ("default" if compile else None)
        self.compiled = self.compile_mode is not None
        fused_attention, cuda_graphs = default_speedups(self.device, self.compile_mode, fused_attention, cuda_graphs)
        check_speed_options(self.device, self.compile_mode, cuda_graphs)
        # An fp32 spare (host memory until needed) redoes any frame whose reduced-precision output is
        # not finite: fp16 can overflow where fp32 cannot, and a NaN frame would be written black.
        self._spare = copy.deepcopy(model).float().eval() if self.dtype != torch.float32 else None
        self._spare_ready = False
        self.bad_frame_fallback = "fp32" if self._spare is not None else None
        self.bad_frames = 0         # frames redone in fp32 after a non-finite reduced-precision output
        self.nonfinite = 0          # frames still not finite in fp32 (written as the model gave them)
        # A copy: the caller's model keeps its precision, device, mode and gradients.
        model = copy.deepcopy(model).eval().to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.fused_attention = fused_attention
        if fused_attention:
            _fuse(model, self.device)
        self.compile_cache = None
        self._mark_step = None
        if self.compiled:
            from .torch_compile import CUDAGRAPH_MODES, compile_model, mark_step

            self.compile_cache = compile_model(model, self.compile_mode)
            if self.compile_mode in CUDAGRAPH_MODES and self.device.type == "cuda":
                self._mark_step = mark_step
        self.model = model
        self._slots = (_Slot(), _Slot())   # page-locked buffers of the (at most) two batches in flight
        self.batches_in_flight = 2 if self.device.type == "cuda" else 1   # submit returns early only on CUDA
        self._turn = 0
        self._streams = None               # upload, compute, download (CUDA), made on first use
        self._last_download = None
        self.graphs = None
        if cuda_graphs:
            from .cuda_graphs import GraphCache

            self.graphs = GraphCache(self._forward)

    @classmethod
    def from_options(cls, options, model: DeblurNet | None = None) -> "TorchBackend":
        """The backend for ``options``; ``model`` replaces loading ``options.weights`` (bench's random weights)."""
        if options.threads:
            torch.set_num_threads(options.threads)   # the process's: a CLI run has one model
        if model is None:   # refuse impossible options before the (possibly long) load
            from .. import load_model

            check_speed_options(resolve_device(options.device), options.compile_mode, options.cuda_graphs)

            model = load_model(options.weights)
        return cls(model, device=options.device, precision=options.precision, compile=options.compile,
                   weights=options.weights, fused_attention=options.fused_attention,
                   compile_mode=options.compile_mode, cuda_graphs=options.cuda_graphs)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything between upload and download, so CUDA graphs capture all of it."""
        if self._mark_step is not None:
            self._mark_step()
        return _restore_integer(self.model, x, self.dtype)

    def run(self, frames: np.ndarray) -> np.ndarray:
        return self.submit(frames).result()

    def submit(self, frames: np.ndarray) -> Pending:
        self.check_frames(frames)
        frames = np.ascontiguousarray(frames)
        if self.device.type == "cuda":
            # This GPU current, whichever thread calls (several GPUs: a thread each): Triton kernels
            # and graph captures go to the current device, not the tensors'.
            with torch.cuda.device(self.device):
                return self._submit_cuda(frames)
        with torch.inference_mode():
            x = torch.from_numpy(frames)
            y, finite = (self.graphs or self._forward)(x)
            if self.graphs is not None:   # a replay's outputs are static buffers the next one overwrites
                y, finite = y.clone(), finite.clone()
            y, finite = y.numpy(), finite.numpy()
            if not finite.all():
                self._redo(x, np.flatnonzero(~finite), y)
        return Pending(y if y.dtype == frames.dtype else y.astype(frames.dtype))

    def _submit_cuda(self, frames: np.ndarray) -> Pending:
        """Queue a batch on three streams and return at once: upload from page-locked memory (the raw
        integer frames), compute, download into page-locked memory. The next batch's copy into
        pinned memory, upload and kernel launches then overlap this batch's compute."""
        slot = self._slots[self._turn]
        if slot.busy:
            raise RuntimeError("torch backend: two batches are already in flight; collect the oldest first")
        if self._streams is None:
            self._streams = tuple(torch.cuda.Stream(self.device) for _ in range(3))
            for stream in self._streams:   # the weights went up on the default stream
                stream.wait_stream(torch.cuda.current_stream(self.device))
        upload, compute, download = self._streams
        host = torch.from_numpy(frames)
        slot.host_in = _pinned(slot.host_in, host)
        slot.host_in.copy_(host)
        with torch.inference_mode():
            with torch.cuda.stream(upload):
                x = slot.host_in.to(self.device, non_blocking=True)
            compute.wait_stream(upload)
            if self.graphs is not None and self._last_download is not None:
                compute.wait_event(self._last_download)   # a replay overwrites the output the last download reads
            with torch.cuda.stream(compute):
                x.record_stream(compute)
                y, finite = (self.graphs or self._forward)(x)
            download.wait_stream(compute)
            with torch.cuda.stream(download):
                y.record_stream(download)
                finite.record_stream(download)
                slot.host_out = _pinned(slot.host_out, y)
                slot.host_finite = _pinned(slot.host_finite, finite)
                slot.host_out.copy_(y, non_blocking=True)
                slot.host_finite.copy_(finite, non_blocking=True)
                done = torch.cuda.Event()
                done.record(download)
        self._last_download = done
        slot.busy = True
        self._turn = (self._turn + 1) % len(self._slots)   # only now: a batch that failed (out of memory) leaves its slot free
        return _CudaPending(self, slot, done, x, frames.dtype)

    def _redo(self, x: torch.Tensor, bad: np.ndarray, y: np.ndarray) -> None:
        """Frames ``bad`` of the batch came out NaN/inf: run them again in fp32 (in place in ``y``)."""
        if self._spare is None:
            self.nonfinite += len(bad)
            if self.nonfinite == len(bad):
                _warn(f"the model gave NaN/inf output in fp32 ({len(bad)} frame(s) so far): are the weights damaged?")
            return
        if not self._spare_ready:
            self._spare = self._spare.to(self.device, memory_format=torch.channels_last)
            self._spare_ready = True
        again, finite = _restore_integer(self._spare, x[torch.from_numpy(bad).to(x.device)], torch.float32)
        y[bad] = again.cpu().numpy()
        first = self.bad_frames == 0
        self.bad_frames += len(bad)
        self.nonfinite += int((~finite.cpu()).sum())
        if first:
            _warn(f"{self.precision} output had NaN/inf; such frames are redone in fp32 (slower; "
                  f"--precision fp32 avoids the retry)")

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device) if self.device.type == "cpu" else f"{self.device} ({torch.cuda.get_device_name(self.device)})",
            "precision": self.precision,
            "weights": self.weights or "shipped default",
            "channels_last": True,
            "compile": self.compiled,
            "compile_mode": self.compile_mode,
            "compile_cache": str(self.compile_cache) if self.compile_cache else None,
            "fused_attention": self.fused_attention,
            "cuda_graphs": self.graphs.describe() if self.graphs else False,
            "cpu_threads": torch.get_num_threads(),
            "bad_frames": self.bad_frames,
            "bad_frame_fallback": self.bad_frame_fallback,
            "nonfinite_frames": self.nonfinite,
            "torch": torch.__version__,
        }

    def release_memory(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()   # each captured graph keeps a memory pool
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.model = None
        self._spare = None
        self._slots = (_Slot(), _Slot())
        self._streams = self._last_download = None
        if self.graphs is not None:
            self.graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _Slot:
    """Page-locked host buffers of one batch in flight; busy from submit until its result is taken."""

    def __init__(self):
        self.host_in = self.host_out = self.host_finite = None
        self.busy = False


def _pinned(buffer: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``buffer`` if it fits ``like`` (shape and type), else a new page-locked one."""
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
        buffer = torch.empty(like.shape, dtype=like.dtype, pin_memory=True)
    return buffer


class _CudaPending(Pending):
    """A batch queued on the CUDA streams; ``result`` waits for its download."""

    def __init__(self, backend: TorchBackend, slot: _Slot, done, x: torch.Tensor, dtype):
        self.backend, self.slot, self.done, self.x, self.dtype = backend, slot, done, x, dtype

    def result(self) -> np.ndarray:
        self.done.synchronize()
        y = self.slot.host_out.numpy().copy()        # the slot's buffers serve the batch after next
        finite = self.slot.host_finite.numpy().copy()
        self.slot.busy = False
        if not finite.all():
            with torch.inference_mode(), torch.cuda.device(self.backend.device):
                self.backend._redo(self.x, np.flatnonzero(~finite), y)
        self.x = None
        return y if y.dtype == self.dtype else y.astype(self.dtype)


def _restore_integer(model: DeblurNet, x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer NHWC frames -> (restored integer NHWC frames, per-frame "all finite" flags), on x's device.

    The NHWC -> NCHW permute is a view with channels_last strides, no copy. Normalisation is in
    fp32: 65535 overflows fp16 and bf16 would round the division. The flags cost one read of the
    output and let the caller redo a frame that overflowed instead of writing it black.
    """
    scale = _SCALE[x.dtype]
    x = x.permute(0, 3, 1, 2).float().div_(scale).to(dtype)
    y = model.restore(x).float()
    finite = torch.isfinite(y).flatten(1).all(1)
    y = y.mul_(scale).round_()
    return y.to(torch.uint8 if scale == 255.0 else torch.int32).permute(0, 2, 3, 1).contiguous(), finite


def _warn(message: str) -> None:
    print(f"vdeblur: warning: {message}", file=sys.stderr)


def default_speedups(device: torch.device, compile_mode: str | None, fused_attention: bool | None,
                     cuda_graphs: bool | None) -> tuple[bool, bool]:
    """Fill in the switches left unset (None): on CUDA both are on, measured together at 1.42x eager
    fp16 (720p, H200) with the same output (65.35 dB against fp32 on the CPU); fused attention
    where Triton imports and the GPU is one the kernels were built and checked for (sm_80 and
    later), CUDA graphs unless a compile mode captures its own. Off elsewhere."""
    from .torch_compile import CUDAGRAPH_MODES

    on_cuda = device.type == "cuda"
    if fused_attention is None:
        fused_attention = on_cuda and importlib.util.find_spec("triton") is not None and _ampere_or_later(device)
    if cuda_graphs is None:
        cuda_graphs = on_cuda and compile_mode not in CUDAGRAPH_MODES
    return fused_attention, cuda_graphs


def _ampere_or_later(device: torch.device) -> bool:
    try:
        return tuple(torch.cuda.get_device_capability(device)) >= (8, 0)
    except Exception:  # noqa: BLE001 - no CUDA here: nothing to run the kernels on
        return False


def check_speed_options(device: torch.device, compile_mode: str | None, cuda_graphs: bool | None) -> None:
    """One-line errors for switch combinations that cannot work, before any work is done."""
    from .torch_compile import CUDAGRAPH_MODES

    if cuda_graphs and compile_mode in CUDAGRAPH_MODES:
        raise VdeblurError(f"--cuda-graphs and --compile-mode {compile_mode} both capture CUDA graphs; use one of them")
    if cuda_graphs:
        from .cuda_graphs import require_cuda

        require_cuda(device)


def _fuse(model: DeblurNet, device: torch.device) -> None:
    """Swap the blocks' attention for the Triton kernels the TensorRT plugin also carries (CUDA only)."""
    if device.type != "cuda":
        raise VdeblurError("--fused-attention runs Triton kernels on CUDA; on the CPU the reference attention is used")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise VdeblurError("--fused-attention needs Triton: pip install 'vdeblur[kernels]'") from None
    from ..kernels.torch_ops import fuse_attention

    fuse_attention(model)
