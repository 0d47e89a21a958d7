"""The interface every backend implements; the pipeline never knows which one it drives."""

from __future__ import annotations

import abc
import collections

import numpy as np

from ..errors import VdeblurError


class Pending:
    """A batch handed to :meth:`Backend.submit`; :meth:`result` waits for it and returns its frames."""

    def __init__(self, frames: np.ndarray):
        self._frames = frames

    def result(self) -> np.ndarray:
        return self._frames


class Backend(abc.ABC):
    """Loads a model once, then deblurs batches of RGB frames.

    Frames cross the interface as uint8 NHWC arrays (what the video reader makes and the writer
    wants); each backend does its own normalisation, padding and precision handling.
    """

    name: str = "backend"
    #: True if ``run`` also takes uint16 NHWC (full-range 16-bit RGB) and returns uint16, so
    #: 10-bit video keeps its precision through the model; otherwise the pipeline feeds uint8.
    accepts_uint16: bool = False
    #: Batches the pipeline may submit before collecting the oldest (see :meth:`submit`): 1 where
    #: ``submit`` does the work before it returns (a second would only hold a finished batch back from
    #: the writer: a 14 s CPU frame written after 28 s), 2 where it returns early (torch on CUDA).
    batches_in_flight: int = 1

    def check_frames(self, frames: np.ndarray) -> None:
        """Refuse anything but the NHWC RGB batches this backend takes, with a one-line error."""
        allowed = (np.uint8, np.uint16) if self.accepts_uint16 else (np.uint8,)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype not in allowed:
            kinds = "/".join(np.dtype(t).name for t in allowed)
            raise VdeblurError(f"{self.name} backend: expected {kinds} (N, H, W, 3) frames, got {frames.dtype} {frames.shape}")

    @abc.abstractmethod
    def run(self, frames: np.ndarray) -> np.ndarray:
        """Deblur a batch: uint8 (N, H, W, 3) in, uint8 (N, H, W, 3) out, same size."""

    def submit(self, frames: np.ndarray) -> Pending:
        """Start a batch and return without waiting where the backend can (torch on CUDA: the next
        batch's upload and launch overlap this one's compute); the default runs it at once. The
        pipeline keeps at most ``batches_in_flight`` batches in flight and collects them in order."""
        return Pending(self.run(frames))

    @abc.abstractmethod
    def describe(self) -> dict:
        """Facts for progress lines, benchmarks and logs: device, precision, model source."""

    def release_memory(self) -> None:
        """Give back memory held for reuse (caches, captured graphs, per-size engines) after running
        out of it, so a smaller retry has room; the default holds nothing."""

    def close(self) -> None:
        """Free device memory and handles; the default has nothing to free."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def submit_within(backend: Backend, batches) -> list[Pending]:
    """Submit ``batches`` to ``backend``, never more than its ``batches_in_flight`` uncollected: for a
    wrapper that hands one batch on as several (regions, mirror images), the oldest is collected
    to make room. Torch on CUDA has page-locked buffers for two batches and refuses a third."""
    handles: list[Pending] = []
    waiting: collections.deque[int] = collections.deque()
    for frames in batches:
        if len(waiting) >= max(1, backend.batches_in_flight):
            oldest = waiting.popleft()
            handles[oldest] = Pending(handles[oldest].result())
        waiting.append(len(handles))
        handles.append(backend.submit(frames))
    return handles


class Wrapper(Backend):
    """A backend that changes what another one is given or gives back (regions, orientation): it
    speaks for ``inner`` (name, depth, batches in flight, facts, memory, closing) and submits
    through it, so the inner backend's early return (torch on CUDA) is kept."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name, self.accepts_uint16, self.batches_in_flight = inner.name, inner.accepts_uint16, inner.batches_in_flight

    def run(self, frames: np.ndarray) -> np.ndarray:
        return self.submit(frames).result()

    @abc.abstractmethod
    def submit(self, frames: np.ndarray) -> Pending:
        """Hand ``frames`` (changed) to ``inner.submit``; its handle's result, changed back."""

    def describe(self) -> dict:
        return self.inner.describe()

    def release_memory(self) -> None:
        self.inner.release_memory()

    def close(self) -> None:
        self.inner.close()
