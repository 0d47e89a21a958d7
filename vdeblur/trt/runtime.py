"""Run a vdeblur engine with pycuda: uint8 frames in page-locked memory, three streams, two slots.

The engine's I/O (see ``onnx_export``) is ``frames`` uint8 [N, H, W, 3] in, ``restored`` uint8
[N, H, W, 3] and ``nonfinite`` float32 [N] (non-finite values per frame, for the guard) out.
Chunk i is uploaded on one stream, computed on a second and downloaded on a third; events
order them, and two slots of buffers let chunk i+1's upload and chunk i-1's download overlap
chunk i's compute. Only the name-based tensor API exists in TensorRT 10 and 11
(set_input_shape / set_tensor_address / execute_async_v3); nothing here uses removed calls.
"""

from __future__ import annotations

import numpy as np

from ..errors import VdeblurError
from . import import_pycuda, import_tensorrt

INPUT, OUTPUT, NONFINITE = "frames", "restored", "nonfinite"


def chunks(n: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``max_batch`` frames covering ``n`` frames."""
    return [(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]


def bad_frames(inputs: np.ndarray, outputs: np.ndarray, nonfinite: np.ndarray, dark: int = 16) -> np.ndarray:
    """Indices of frames the engine got wrong: any NaN/Inf inside, or an all-black output for an
    input that is not (near) black."""
    n = len(outputs)
    out_max = outputs.reshape(n, -1).max(axis=1)
    in_max = inputs.reshape(n, -1).max(axis=1)
    black = (out_max == 0) & (in_max > dark)
    return np.flatnonzero((nonfinite > 0) | black)


class _Slot:
    """Host (page-locked) and device buffers for one chunk in flight, grown on demand."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.capacity = self.frames_capacity = 0
        self.done = cuda.Event()       # set when this slot's download has finished
        self.uploaded = cuda.Event()
        self.computed = cuda.Event()

    def ensure(self, frames: int, pixels: int) -> None:
        need = frames * pixels * 3
        if need <= self.capacity and frames <= self.frames_capacity:
            return
        self.free()
        cuda = self.cuda
        self.host_in = cuda.pagelocked_empty(need, np.uint8)
        self.host_out = cuda.pagelocked_empty(need, np.uint8)
        self.host_nf = cuda.pagelocked_empty(frames, np.float32)
        self.dev_in = cuda.mem_alloc(need)
        self.dev_out = cuda.mem_alloc(need)
        self.dev_nf = cuda.mem_alloc(frames * 4)
        self.capacity, self.frames_capacity = need, frames

    def free(self) -> None:
        for name in ("dev_in", "dev_out", "dev_nf"):
            buf = getattr(self, name, None)
            if buf is not None:
                buf.free()
                setattr(self, name, None)
        self.host_in = self.host_out = self.host_nf = None
        self.capacity = self.frames_capacity = 0


class EngineRunner:
    """One deserialized engine, one execution context, two slots of buffers."""

    def __init__(self, plan: bytes, source: str = "engine"):
        trt = import_tensorrt()
        cuda, ctx = import_pycuda()
        self.trt, self.cuda, self._ctx = trt, cuda, ctx
        self.source = source
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise VdeblurError(f"{source}: TensorRT could not load this engine (built by another TensorRT version or "
                               "for another GPU?); rebuild it with `vdeblur compile`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [INPUT] or sorted(set(names) - {INPUT}) != sorted([OUTPUT, NONFINITE]):
            raise VdeblurError(f"{source}: not a vdeblur engine (tensors {names})")
        lo, opt, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT, 0))
        self.min_shape, self.opt_shape, self.max_shape = lo, opt, hi
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise VdeblurError(f"{source}: could not create an execution context (GPU out of memory?)")
        self.streams = [cuda.Stream() for _ in range(3)]  # upload, compute, download
        self.slots = [_Slot(cuda), _Slot(cuda)]
        self._shape = None

    @property
    def max_batch(self) -> int:
        return int(self.max_shape[0])

    def check_size(self, height: int, width: int) -> None:
        (_, h0, w0, _), (_, h1, w1, _) = self.min_shape, self.max_shape
        if not (h0 <= height <= h1 and w0 <= width <= w1):
            size = f"{h0}x{w0}" if (h0, w0) == (h1, w1) else f"{h0}x{w0} to {h1}x{w1}"
            raise VdeblurError(f"{self.source} takes {size} frames, not {height}x{width}; compile one for this size "
                               f"(`vdeblur compile --height {height} --width {width}`)")

    def _submit(self, slot: _Slot, frames: np.ndarray) -> None:
        cuda = self.cuda
        upload, compute, download = self.streams
        n, h, w, _ = frames.shape
        slot.done.synchronize()  # the slot's previous chunk has left the device (no-op if never used)
        slot.ensure(n, h * w)
        nbytes = frames.size
        host_in = slot.host_in[:nbytes]
        np.copyto(host_in, frames.reshape(-1))
        cuda.memcpy_htod_async(slot.dev_in, host_in, upload)
        slot.uploaded.record(upload)
        compute.wait_for_event(slot.uploaded)
        ctx = self.context
        if self._shape != frames.shape:
            if not ctx.set_input_shape(INPUT, tuple(frames.shape)):
                raise VdeblurError(f"{self.source}: TensorRT refused input shape {tuple(frames.shape)}")
            self._shape = frames.shape
        ctx.set_tensor_address(INPUT, int(slot.dev_in))
        ctx.set_tensor_address(OUTPUT, int(slot.dev_out))
        ctx.set_tensor_address(NONFINITE, int(slot.dev_nf))
        if not ctx.execute_async_v3(compute.handle):
            raise VdeblurError(f"{self.source}: TensorRT failed to enqueue the inference")
        slot.computed.record(compute)
        download.wait_for_event(slot.computed)
        cuda.memcpy_dtoh_async(slot.host_out[:nbytes], slot.dev_out, download)
        cuda.memcpy_dtoh_async(slot.host_nf[:n], slot.dev_nf, download)
        slot.done.record(download)

    @staticmethod
    def _collect(slot: _Slot, out: np.ndarray, nonfinite: np.ndarray) -> None:
        slot.done.synchronize()
        out[...] = slot.host_out[:out.size].reshape(out.shape)
        nonfinite[...] = slot.host_nf[:len(nonfinite)]

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC frames -> (uint8 NHWC restored, float32 per-frame non-finite counts)."""
        n, h, w, _ = frames.shape
        self.check_size(h, w)
        out = np.empty_like(frames)
        nonfinite = np.empty(n, np.float32)
        if n == 0:   # as every backend: nothing in, nothing out
            return out, nonfinite
        spans = chunks(n, self.max_batch)
        self._ctx.push()  # the caller's thread may not be the one that loaded the engine
        try:
            for i, (a, b) in enumerate(spans):
                self._submit(self.slots[i % 2], np.ascontiguousarray(frames[a:b]))
                if i:
                    pa, pb = spans[i - 1]
                    self._collect(self.slots[(i - 1) % 2], out[pa:pb], nonfinite[pa:pb])
            a, b = spans[-1]
            self._collect(self.slots[(len(spans) - 1) % 2], out[a:b], nonfinite[a:b])
        finally:
            self.cuda.Context.pop()
        return out, nonfinite

    def close(self) -> None:
        if getattr(self, "slots", None) is None:
            return
        self._ctx.push()
        try:
            for s in self.streams:
                s.synchronize()
            for slot in self.slots:
                slot.free()
        finally:
            self.cuda.Context.pop()
        self.slots = None
        self.context = self.engine = self.runtime = None
